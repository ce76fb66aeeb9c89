import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

import { signedIn } from "./api";
import { AuthPage } from "./pages/Auth";
import { JoinPage } from "./pages/Join";
import { StudioPage } from "./pages/Studio";
import { StudiosPage } from "./pages/Studios";
import "./styles.css";

/// Moves to `path` inside the app without a reload.
export function navigate(path: string): void {
  history.pushState(null, "", path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const onPop = () => setPath(location.pathname);
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);
  return path;
}

function App() {
  const path = usePath();
  const studio = /^\/studio\/([\w-]+)$/.exec(path);
  const join = /^\/join\/([\w-]+)$/.exec(path);
  if (join?.[1]) return <JoinPage studio={join[1]} />;
  if (path === "/signup") return <AuthPage mode="signup" />;
  if (path === "/signin" || !signedIn()) return <AuthPage mode="signin" />;
  if (studio?.[1]) return <StudioPage studio={studio[1]} />;
  return <StudiosPage />;
}

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}

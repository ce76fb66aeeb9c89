import { useState, type FormEvent } from "react";

import { signIn, signUp } from "../api";
import { navigate } from "../main";

export function AuthPage({ mode }: { mode: "signin" | "signup" }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === "signup") await signUp(email, password, name);
      else await signIn(email, password);
      navigate("/studios");
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="auth">
      <h1>BuildStream Studio</h1>
      <form onSubmit={submit} aria-label={mode === "signup" ? "Sign up" : "Sign in"}>
        <h2>{mode === "signup" ? "Create your account" : "Sign in"}</h2>
        {mode === "signup" && (
          <label>
            Your name
            <input name="display_name" value={name} onChange={(e) => setName(e.target.value)} required />
          </label>
        )}
        <label>
          Email
          <input name="email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            minLength={8}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {error && <p className="error" role="alert">{error}</p>}
        <button type="submit" disabled={busy}>
          {mode === "signup" ? "Sign up" : "Sign in"}
        </button>
        {mode === "signup" ? (
          <p>
            Have an account? <a href="/signin" onClick={(e) => { e.preventDefault(); navigate("/signin"); }}>Sign in</a>
          </p>
        ) : (
          <p>
            New here? <a href="/signup" onClick={(e) => { e.preventDefault(); navigate("/signup"); }}>Create an account</a>
          </p>
        )}
      </form>
    </main>
  );
}

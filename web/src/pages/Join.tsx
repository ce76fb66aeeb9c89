import { useState } from "react";

import { callWith, guestToken, storeGuestToken } from "../api";
import { PreJoin } from "../components/PreJoin";
import { StudioRoom } from "./Studio";

/// A guest's way in: the invite link (its token in the fragment, which
/// never reaches a server log), a name, and then the room. The guest's pass
/// is kept so that a reload comes back as the same participant.
export function JoinPage({ studio }: { studio: string }) {
  const invite = new URLSearchParams(location.hash.slice(1)).get("invite");
  const [token, setToken] = useState<string | null>(() => guestToken(studio));
  const [entered, setEntered] = useState<{ stream: MediaStream; name: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [left, setLeft] = useState(false);

  if (left) {
    return (
      <main className="waiting">
        <h2>You left the studio.</h2>
        <p>Thanks for joining. Reopen the invite link to come back.</p>
      </main>
    );
  }
  if (!token && !invite) {
    return <main className="error" role="alert">This link has no invite in it; ask the host for a new one.</main>;
  }
  if (!entered) {
    return (
      <>
        <PreJoin
          title="You are invited to a studio"
          initialName={localStorage.getItem("buildstream.name") ?? ""}
          nameLocked={token !== null}
          onJoin={(stream, name) => {
            setError(null);
            localStorage.setItem("buildstream.name", name);
            if (token) {
              setEntered({ stream, name });
              return;
            }
            callWith<{ guest_token: string }>(null, "POST", `/api/v1/studios/${studio}/room/guests`, { invite, name })
              .then((pass) => {
                storeGuestToken(studio, pass.guest_token);
                setToken(pass.guest_token);
                setEntered({ stream, name });
              })
              .catch((err: unknown) => {
                stream.getTracks().forEach((t) => t.stop());
                setError(err instanceof Error ? err.message : String(err));
              });
          }}
        />
        {error && <p className="error" role="alert">{error}</p>}
      </>
    );
  }
  return (
    <StudioRoom
      studio={studio}
      title="Studio"
      guestToken={token ?? ""}
      host={false}
      stream={entered.stream}
      name={entered.name}
      onLeave={() => setLeft(true)}
    />
  );
}

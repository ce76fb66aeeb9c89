import { useEffect, useState, type FormEvent } from "react";

import { call, type Broadcast, type Destination } from "../api";

const PLATFORMS: { id: string; label: string; needsUrl: boolean }[] = [
  { id: "youtube", label: "YouTube", needsUrl: false },
  { id: "facebook", label: "Facebook", needsUrl: false },
  { id: "twitch", label: "Twitch", needsUrl: false },
  { id: "custom", label: "Custom RTMP/RTMPS", needsUrl: true },
];

interface Draft {
  id: string | null;
  platform: string;
  name: string;
  url: string;
  stream_key: string;
}

const EMPTY: Draft = { id: null, platform: "youtube", name: "", url: "", stream_key: "" };

/// Where the show goes: add, edit and remove destinations; each one's
/// state while live.
export function Destinations({ studio, broadcast }: { studio: string; broadcast: Broadcast | null }) {
  const [list, setList] = useState<Destination[]>([]);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function load() {
    setList(await call<Destination[]>("GET", `/api/v1/studios/${studio}/destinations`));
  }
  useEffect(() => {
    void load().catch((err: unknown) => setError(String(err)));
  }, [studio]);

  async function save(event: FormEvent) {
    event.preventDefault();
    if (!draft) return;
    setError(null);
    try {
      const body = { platform: draft.platform, name: draft.name, url: draft.url, stream_key: draft.stream_key };
      // An edit replaces the destination: its key is never shown again, so
      // it is entered anew.
      await call("POST", `/api/v1/studios/${studio}/destinations`, body);
      if (draft.id) await call("DELETE", `/api/v1/studios/${studio}/destinations/${draft.id}`);
      setDraft(null);
      await load();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }

  async function remove(id: string) {
    setError(null);
    try {
      await call("DELETE", `/api/v1/studios/${studio}/destinations/${id}`);
      await load();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }

  const status = (id: string) => broadcast?.destinations.find((d) => d.id === id);
  const platform = PLATFORMS.find((p) => p.id === draft?.platform);
  return (
    <section className="panel" aria-label="Destinations">
      <h3>Destinations</h3>
      <ul className="destinations">
        {list.map((d) => {
          const s = status(d.id);
          return (
            <li key={d.id} data-destination={d.id}>
              <strong>{d.name}</strong> <small>{d.platform}</small>
              {s && (
                <span className={`badge ${s.state}`} data-state={s.state}>
                  {s.state}
                  {s.state === "retrying" && s.last_error ? `: ${s.last_error}` : ""}
                </span>
              )}
              <span className="actions">
                <button className="secondary" onClick={() => setDraft({ id: d.id, platform: d.platform, name: d.name, url: d.url, stream_key: "" })}>Edit</button>
                <button className="danger" onClick={() => void remove(d.id)}>Remove</button>
              </span>
            </li>
          );
        })}
      </ul>
      {draft ? (
        <form onSubmit={save} aria-label="Destination">
          <label>
            Platform
            <select name="platform" value={draft.platform} onChange={(e) => setDraft({ ...draft, platform: e.target.value })}>
              {PLATFORMS.map((p) => (
                <option key={p.id} value={p.id}>{p.label}</option>
              ))}
            </select>
          </label>
          <label>
            Name
            <input name="name" value={draft.name} onChange={(e) => setDraft({ ...draft, name: e.target.value })} placeholder={platform?.label} />
          </label>
          <label>
            Server URL {platform?.needsUrl ? "" : "(optional)"}
            <input
              name="url"
              value={draft.url}
              onChange={(e) => setDraft({ ...draft, url: e.target.value })}
              placeholder="rtmp://… or rtmps://…"
              required={platform?.needsUrl}
            />
          </label>
          <label>
            Stream key
            <input name="stream_key" type="password" value={draft.stream_key} onChange={(e) => setDraft({ ...draft, stream_key: e.target.value })} required />
          </label>
          <div className="row">
            <button type="submit">{draft.id ? "Save destination" : "Add destination"}</button>
            <button type="button" className="secondary" onClick={() => setDraft(null)}>Cancel</button>
          </div>
        </form>
      ) : (
        <button onClick={() => setDraft({ ...EMPTY })}>Add destination</button>
      )}
      {error && <p className="error" role="alert">{error}</p>}
    </section>
  );
}

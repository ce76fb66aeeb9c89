import { useEffect, useState, type FormEvent } from "react";

import { call, signOut, type Studio } from "../api";
import { navigate } from "../main";

export function StudiosPage() {
  const [studios, setStudios] = useState<Studio[] | null>(null);
  const [filter, setFilter] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [renaming, setRenaming] = useState<{ id: string; name: string } | null>(null);

  async function load() {
    try {
      setStudios(await call<Studio[]>("GET", "/api/v1/studios"));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }

  useEffect(() => {
    void load();
  }, []);

  async function act(work: () => Promise<unknown>) {
    setError(null);
    try {
      await work();
      await load();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }

  async function create(event: FormEvent) {
    event.preventDefault();
    await act(async () => {
      const studio = await call<Studio>("POST", "/api/v1/studios", { name });
      setName("");
      navigate(`/studio/${studio.id}`);
    });
  }

  const shown = (studios ?? []).filter((s) => s.name.toLowerCase().includes(filter.trim().toLowerCase()));

  return (
    <main className="studios">
      <header className="bar">
        <h1>Your studios</h1>
        <button className="secondary" onClick={() => void signOut().then(() => navigate("/signin"))}>
          Sign out
        </button>
      </header>
      <form className="row" onSubmit={create} aria-label="New studio">
        <input placeholder="New studio name" value={name} onChange={(e) => setName(e.target.value)} required />
        <button type="submit">Create studio</button>
      </form>
      <input
        className="filter"
        type="search"
        placeholder="Filter by name"
        aria-label="Filter by name"
        value={filter}
        onChange={(e) => setFilter(e.target.value)}
      />
      {error && <p className="error" role="alert">{error}</p>}
      {studios === null ? (
        <p>Loading…</p>
      ) : shown.length === 0 ? (
        <p>{studios.length === 0 ? "No studios yet: create one above." : "No studio matches."}</p>
      ) : (
        <ul className="studio-list">
          {shown.map((studio) => (
            <li key={studio.id} data-studio={studio.id}>
              {renaming?.id === studio.id ? (
                <form
                  className="row"
                  onSubmit={(e) => {
                    e.preventDefault();
                    void act(async () => {
                      await call("PATCH", `/api/v1/studios/${studio.id}`, { name: renaming.name });
                      setRenaming(null);
                    });
                  }}
                >
                  <input aria-label="Studio name" value={renaming.name} onChange={(e) => setRenaming({ id: studio.id, name: e.target.value })} />
                  <button type="submit">Save</button>
                  <button type="button" className="secondary" onClick={() => setRenaming(null)}>Cancel</button>
                </form>
              ) : (
                <>
                  <a href={`/studio/${studio.id}`} onClick={(e) => { e.preventDefault(); navigate(`/studio/${studio.id}`); }}>
                    {studio.name}
                  </a>
                  {studio.live && <span className="badge live">live</span>}
                  <span className="actions">
                    <button className="secondary" onClick={() => setRenaming({ id: studio.id, name: studio.name })}>Rename</button>
                    <button
                      className="danger"
                      onClick={() => {
                        if (confirm(`Delete ${studio.name}?`)) void act(() => call("DELETE", `/api/v1/studios/${studio.id}`));
                      }}
                    >
                      Delete
                    </button>
                  </span>
                </>
              )}
            </li>
          ))}
        </ul>
      )}
    </main>
  );
}

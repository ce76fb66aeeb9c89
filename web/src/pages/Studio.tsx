import { useCallback, useEffect, useRef, useState } from "react";

import {
  call,
  callWith,
  type Broadcast,
  type Joined,
  type Layout,
  type Participant,
  type Room as RoomState,
  type Scene,
  type Source,
  type Studio,
} from "../api";
import { Branding } from "../components/Branding";
import { Destinations } from "../components/Destinations";
import { PreJoin } from "../components/PreJoin";
import { StagePreview } from "../components/StagePreview";
import { navigate } from "../main";
import { EdgeSession } from "../rtc";

const LAYOUTS: { id: Layout; label: string }[] = [
  { id: "solo", label: "Solo" },
  { id: "split", label: "Split" },
  { id: "grid", label: "Grid" },
  { id: "pip", label: "Picture in picture" },
  { id: "screen", label: "Screen share" },
];

/// The host's way in: their account opens their studio.
export function StudioPage({ studio }: { studio: string }) {
  const [info, setInfo] = useState<Studio | null>(null);
  const [entered, setEntered] = useState<{ stream: MediaStream; name: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [me, setMe] = useState<string | null>(null);
  useEffect(() => {
    call<Studio>("GET", `/api/v1/studios/${studio}`).then(setInfo, (err: unknown) => setError(String(err)));
    call<{ display_name: string }>("GET", "/api/v1/users/me").then((u) => setMe(u.display_name), () => undefined);
  }, [studio]);
  if (error) return <main className="error" role="alert">{error}</main>;
  if (!entered) {
    return (
      <PreJoin
        title={info ? `Enter ${info.name}` : "Enter the studio"}
        initialName={localStorage.getItem("buildstream.name") ?? me ?? ""}
        onJoin={(stream, name) => {
          localStorage.setItem("buildstream.name", name);
          setEntered({ stream, name });
        }}
      />
    );
  }
  return (
    <StudioRoom
      studio={studio}
      title={info?.name ?? "Studio"}
      host
      stream={entered.stream}
      name={entered.name}
      onLeave={() => navigate("/studios")}
    />
  );
}

interface Remote {
  session: EdgeSession | null;
  stream: MediaStream | null;
  starting: boolean;
}

/// The room itself, for host and guest alike; the host also gets the
/// producer's controls.
export function StudioRoom({
  studio,
  title,
  guestToken,
  host,
  stream,
  name,
  onLeave,
}: {
  studio: string;
  title: string;
  /// A guest's pass; the host uses their account.
  guestToken?: string;
  host: boolean;
  stream: MediaStream;
  name: string;
  onLeave: () => void;
}) {
  const [joined, setJoined] = useState<Joined | null>(null);
  const [room, setRoom] = useState<RoomState | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [published, setPublished] = useState(false);
  const [muted, setMuted] = useState(false);
  const [cameraOff, setCameraOff] = useState(false);
  const [screen, setScreen] = useState<{ stream: MediaStream; session: EdgeSession; source: string } | null>(null);
  const [broadcast, setBroadcast] = useState<Broadcast | null>(null);
  const [sources, setSources] = useState<Source[]>([]);
  const [invite, setInvite] = useState<string | null>(null);
  const [remotes, setRemotes] = useState<Map<string, MediaStream | null>>(new Map());
  const [now, setNow] = useState(Date.now());
  const camera = useRef<EdgeSession | null>(null);
  const players = useRef<Map<string, Remote>>(new Map());
  const left = useRef(false);
  const sceneEdits = useRef<{ inFlight: number; doneAt: number; latest: Scene | null }>({
    inFlight: 0,
    doneAt: 0,
    latest: null,
  });

  const api = useCallback(
    <T,>(method: string, path: string, body?: unknown) =>
      guestToken === undefined ? call<T>(method, path, body) : callWith<T>(guestToken, method, path, body),
    [guestToken],
  );

  // Join, then keep the room fresh (which also keeps us present).
  useEffect(() => {
    let stopped = false;
    api<Joined>("POST", `/api/v1/studios/${studio}/room/join`, host ? { name } : undefined)
      .then((j) => {
        if (stopped) return;
        setJoined(j);
        setRoom(j.room);
      })
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)));
    const timer = setInterval(() => {
      const asked = Date.now();
      api<RoomState>("GET", `/api/v1/studios/${studio}/room`)
        .then((r) => {
          if (stopped) return;
          // A snapshot asked for before our own latest scene change was
          // stored would undo it on screen; keep ours until they agree.
          const stale = sceneEdits.current.inFlight > 0 || asked < sceneEdits.current.doneAt;
          setRoom((current) => (stale && current ? { ...r, scene: current.scene } : r));
        })
        .catch((err: unknown) => {
          if (err instanceof Error && "status" in err && (err as { status: number }).status === 403) {
            setError(err.message);
          }
        });
    }, 1000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [api, host, name, studio]);

  const admitted = room !== null && room.you.state !== "waiting";

  // Publish the camera once admitted; again if the connection fails.
  useEffect(() => {
    if (!joined || !room || !admitted || left.current) return;
    if (camera.current && !camera.current.failed) return;
    camera.current?.close();
    camera.current = null;
    EdgeSession.publish(joined.edge_url, studio, room.you.camera_source, joined.media_token, stream)
      .then((session) => {
        if (left.current) session.close();
        else {
          camera.current = session;
          setPublished(true);
        }
      })
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)));
  }, [joined, room, admitted, studio, stream]);

  // Everything to receive: the others' cameras and screens, and the
  // encoders on stage.
  const wanted = useCallback((): string[] => {
    if (!room || !admitted) return [];
    const mine = new Set([room.you.camera_source, room.you.screen_source]);
    const list = new Set<string>();
    for (const p of room.participants) {
      if (mine.has(p.camera_source) || p.state === "waiting" || !p.online) continue;
      list.add(p.camera_source);
      if (p.sharing) list.add(p.screen_source);
    }
    for (const source of room.scene.on_stage) if (!mine.has(source)) list.add(source);
    return [...list];
  }, [room, admitted]);

  useEffect(() => {
    if (!joined) return;
    const want = new Set(wanted());
    const map = players.current;
    for (const [source, remote] of map) {
      if (!want.has(source) || (remote.session?.failed ?? false)) {
        remote.session?.close();
        map.delete(source);
        setRemotes((r) => {
          const next = new Map(r);
          next.delete(source);
          return next;
        });
      }
    }
    for (const source of want) {
      if (map.has(source)) continue;
      const remote: Remote = { session: null, stream: null, starting: true };
      map.set(source, remote);
      EdgeSession.play(joined.edge_url, studio, source, joined.media_token, (s) => {
        remote.stream = s;
        setRemotes((r) => new Map(r).set(source, s));
      })
        .then((session) => {
          if (map.get(source) === remote) remote.session = session;
          else session.close();
        })
        .catch(() => map.delete(source));
    }
  }, [joined, wanted, studio]);

  // The host watches the show's state.
  useEffect(() => {
    if (!host) return;
    const load = () => {
      call<Broadcast>("GET", `/api/v1/studios/${studio}/broadcast`).then(setBroadcast, () => undefined);
      call<Source[]>("GET", `/api/v1/studios/${studio}/sources`).then(setSources, () => undefined);
    };
    load();
    const timer = setInterval(load, 2000);
    return () => clearInterval(timer);
  }, [host, studio]);

  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);

  const leave = useCallback(() => {
    left.current = true;
    camera.current?.close();
    screen?.session.close();
    screen?.stream.getTracks().forEach((t) => t.stop());
    for (const remote of players.current.values()) remote.session?.close();
    stream.getTracks().forEach((t) => t.stop());
    void api("DELETE", `/api/v1/studios/${studio}/room/me`).catch(() => undefined);
    onLeave();
  }, [api, onLeave, screen, stream, studio]);

  async function act(work: () => Promise<unknown>) {
    setError(null);
    try {
      await work();
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  }

  /// Shows a scene change at once and stores it. Changes go out one at a
  /// time, each carrying the latest scene, so that two quick clicks cannot
  /// land at the server in the wrong order.
  const updateScene = (scene: Scene) => {
    setRoom((r) => (r ? { ...r, scene } : r));
    const edits = sceneEdits.current;
    edits.latest = scene;
    if (edits.inFlight > 0) return;
    edits.inFlight += 1;
    void act(async () => {
      try {
        let sent: Scene | null = null;
        while (edits.latest !== sent) {
          sent = edits.latest;
          await call("PUT", `/api/v1/studios/${studio}/scene`, sent);
        }
      } finally {
        edits.inFlight -= 1;
        edits.doneAt = Date.now();
      }
    });
  };

  /// The scene as last changed here (ahead of the server while a change is
  /// on its way).
  const currentScene = (): Scene =>
    (sceneEdits.current.inFlight > 0 ? sceneEdits.current.latest : null) ?? room?.scene ?? ({} as Scene);

  /// Puts a source on stage or takes it off. A shared screen goes first,
  /// where the screen-share layout shows it large.
  function toggleStage(source: string, screenFirst = false) {
    if (!room) return;
    const scene = currentScene();
    const stage = scene.on_stage;
    const on = stage.includes(source);
    const next = on ? stage.filter((s) => s !== source) : screenFirst ? [source, ...stage] : [...stage, source];
    updateScene({ ...scene, on_stage: next });
  }

  async function shareScreen() {
    if (!joined) return;
    if (screen) {
      screen.session.close();
      screen.stream.getTracks().forEach((t) => t.stop());
      setScreen(null);
      await api("DELETE", `/api/v1/studios/${studio}/room/screen`);
      return;
    }
    const media = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: true });
    const { screen_source } = await api<{ screen_source: string }>("POST", `/api/v1/studios/${studio}/room/screen`);
    const session = await EdgeSession.publish(joined.edge_url, studio, screen_source, joined.media_token, media);
    const ended = media.getVideoTracks()[0];
    setScreen({ stream: media, session, source: screen_source });
    ended?.addEventListener("ended", () => {
      session.close();
      setScreen(null);
      void api("DELETE", `/api/v1/studios/${studio}/room/screen`).catch(() => undefined);
    });
  }

  if (error && !room) return <main className="error" role="alert">{error}</main>;
  if (!room || !joined) return <main className="loading">Joining…</main>;

  const names = new Map<string, string>();
  for (const s of sources) names.set(s.id, s.name);
  for (const p of room.participants) {
    names.set(p.camera_source, p.name);
    names.set(p.screen_source, `${p.name} (screen)`);
  }
  const streams = new Map<string, MediaStream | null>(remotes);
  streams.set(room.you.camera_source, cameraOff ? null : stream);
  if (screen) streams.set(screen.source, screen.stream);

  const live = broadcast !== null && broadcast.state !== "offline";
  const started = broadcast?.started_at ? Date.parse(broadcast.started_at) : null;
  const elapsed = started ? Math.max(0, Math.floor((now - started) / 1000)) : 0;
  const clock = `${Math.floor(elapsed / 3600)}:${String(Math.floor(elapsed / 60) % 60).padStart(2, "0")}:${String(elapsed % 60).padStart(2, "0")}`;
  const onStage = (p: Participant) => room.scene.on_stage.includes(p.camera_source);
  const encoders = sources.filter((s) => s.kind === "rtmp" || s.kind === "whip");

  return (
    <main className="room" data-state={room.you.state}>
      <header className="bar">
        <h1>{title}</h1>
        {host && live && (
          <span className="badge live" data-testid="live-timer">
            LIVE {clock}
          </span>
        )}
        {!host && room.you.state === "stage" && <span className="badge live">You are live</span>}
        {!host && room.you.state === "backstage" && <span className="badge">Backstage</span>}
        {host && (
          <span className="actions">
            <button
              className="secondary"
              onClick={() =>
                void act(async () => {
                  const made = await call<{ invite_path: string }>("POST", `/api/v1/studios/${studio}/invites`, {});
                  const link = `${location.origin}${made.invite_path}`;
                  setInvite(link);
                  await navigator.clipboard?.writeText(link).catch(() => undefined);
                })
              }
            >
              Invite guests
            </button>
            {live ? (
              <button className="danger" onClick={() => void act(() => call("DELETE", `/api/v1/studios/${studio}/broadcast`))}>
                End show
              </button>
            ) : (
              <button className="golive" onClick={() => void act(() => call("POST", `/api/v1/studios/${studio}/broadcast`))}>
                Go live
              </button>
            )}
          </span>
        )}
      </header>
      {invite && (
        <p className="invite">
          Invite link (copied): <input readOnly aria-label="Invite link" value={invite} onFocus={(e) => e.target.select()} />
        </p>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      {room.you.state === "waiting" ? (
        <section className="waiting">
          <h2>Waiting for the host to let you in…</h2>
          <p>You are backstage as {room.you.name}. Your camera stays here until you are admitted.</p>
        </section>
      ) : (
        <div className="workspace">
          <section className="center">
            <StagePreview scene={room.scene} streams={streams} names={names} />
            {host && (
              <div className="layouts" role="group" aria-label="Layout">
                {LAYOUTS.map((l) => (
                  <button
                    key={l.id}
                    className={room.scene.layout === l.id ? "selected" : "secondary"}
                    aria-pressed={room.scene.layout === l.id}
                    onClick={() => updateScene({ ...currentScene(), layout: l.id })}
                  >
                    {l.label}
                  </button>
                ))}
              </div>
            )}
            <h2>Backstage</h2>
            <ul className="backstage">
              {room.participants.map((p) => (
                <li key={p.id} data-participant={p.id} data-name={p.name} data-state={p.state} className={p.online ? undefined : "offline"}>
                  <BackstageTile stream={streams.get(p.camera_source) ?? null} />
                  <span className="who">
                    {p.name} {p.role === "host" && <small>(host)</small>}
                    <span className={`badge ${p.state}`}>{p.state === "stage" ? "on stage" : p.state}</span>
                  </span>
                  {host && p.state === "waiting" && (
                    <button onClick={() => void act(() => call("POST", `/api/v1/studios/${studio}/room/participants/${p.id}/admit`))}>Admit</button>
                  )}
                  {host && p.state !== "waiting" && (
                    <button onClick={() => toggleStage(p.camera_source)}>{onStage(p) ? "Remove from stage" : "Add to stage"}</button>
                  )}
                  {host && (p.sharing || room.scene.on_stage.includes(p.screen_source)) && (
                    <button onClick={() => toggleStage(p.screen_source, true)}>
                      {room.scene.on_stage.includes(p.screen_source) ? "Remove screen" : "Add screen"}
                    </button>
                  )}
                  {host && p.role === "guest" && (
                    <button className="danger" onClick={() => void act(() => call("DELETE", `/api/v1/studios/${studio}/room/participants/${p.id}`))}>Remove</button>
                  )}
                </li>
              ))}
              {host &&
                encoders.map((s) => (
                  <li key={s.id} data-source={s.id}>
                    <span className="who">
                      {s.name} <small>({s.kind})</small>
                    </span>
                    <button onClick={() => toggleStage(s.id)}>{room.scene.on_stage.includes(s.id) ? "Remove from stage" : "Add to stage"}</button>
                  </li>
                ))}
            </ul>
          </section>
          {host && (
            <aside className="side">
              <Destinations studio={studio} broadcast={broadcast} />
              <Branding scene={room.scene} update={updateScene} />
            </aside>
          )}
        </div>
      )}
      <div className="audio-out" aria-hidden>
        {[...remotes].map(([source, remote]) => (
          <RemoteAudio key={source} stream={remote} />
        ))}
      </div>
      <footer className="controls">
        <button
          aria-pressed={muted}
          onClick={() => {
            stream.getAudioTracks().forEach((t) => (t.enabled = muted));
            setMuted(!muted);
          }}
        >
          {muted ? "Unmute" : "Mute"}
        </button>
        <button
          aria-pressed={cameraOff}
          onClick={() => {
            stream.getVideoTracks().forEach((t) => (t.enabled = cameraOff));
            setCameraOff(!cameraOff);
          }}
        >
          {cameraOff ? "Camera on" : "Camera off"}
        </button>
        <button disabled={!admitted || !published} onClick={() => void act(shareScreen)}>
          {screen ? "Stop sharing" : "Share screen"}
        </button>
        <button className="danger" onClick={leave}>
          Leave
        </button>
      </footer>
    </main>
  );
}

/// The others' voices; pictures are shown muted, sound plays here once.
function RemoteAudio({ stream }: { stream: MediaStream | null }) {
  const audio = useRef<HTMLAudioElement>(null);
  useEffect(() => {
    if (audio.current && audio.current.srcObject !== stream) audio.current.srcObject = stream;
  }, [stream]);
  return <audio ref={audio} autoPlay />;
}

function BackstageTile({ stream }: { stream: MediaStream | null }) {
  const video = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (video.current && video.current.srcObject !== stream) video.current.srcObject = stream;
  }, [stream]);
  return stream ? <video ref={video} autoPlay muted playsInline /> : <div className="placeholder" />;
}

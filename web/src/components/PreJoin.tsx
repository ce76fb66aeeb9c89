import { useEffect, useRef, useState, type FormEvent } from "react";

/// Camera and microphone preview before entering the studio: device
/// pickers, a level meter and the display name.
export function PreJoin({
  title,
  initialName,
  nameLocked,
  onJoin,
}: {
  title: string;
  initialName: string;
  nameLocked?: boolean;
  onJoin: (stream: MediaStream, name: string) => void;
}) {
  const video = useRef<HTMLVideoElement>(null);
  const [stream, setStream] = useState<MediaStream | null>(null);
  const [devices, setDevices] = useState<MediaDeviceInfo[]>([]);
  const [cameraId, setCameraId] = useState("");
  const [micId, setMicId] = useState("");
  const [level, setLevel] = useState(0);
  const [name, setName] = useState(initialName);
  const [error, setError] = useState<string | null>(null);
  const handedOver = useRef<MediaStream | null>(null);
  const typed = useRef(false);

  // A suggested name that arrives late (the account's, once loaded) fills
  // the field only while the person has not typed one of their own.
  useEffect(() => {
    if (!typed.current) setName(initialName);
  }, [initialName]);

  useEffect(() => {
    let stopped = false;
    let current: MediaStream | null = null;
    navigator.mediaDevices
      .getUserMedia({
        video: cameraId ? { deviceId: { exact: cameraId }, width: 1280, height: 720 } : { width: 1280, height: 720 },
        audio: micId ? { deviceId: { exact: micId } } : true,
      })
      .then(async (media) => {
        if (stopped) {
          media.getTracks().forEach((t) => t.stop());
          return;
        }
        current = media;
        setStream(media);
        setDevices(await navigator.mediaDevices.enumerateDevices());
      })
      .catch((err: unknown) => setError(`camera or microphone unavailable: ${String(err)}`));
    return () => {
      stopped = true;
      // Handed over on join; otherwise stopped here.
      if (current && current !== handedOver.current) current.getTracks().forEach((t) => t.stop());
    };
  }, [cameraId, micId]);

  useEffect(() => {
    if (video.current) video.current.srcObject = stream;
    if (!stream || stream.getAudioTracks().length === 0) return;
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 512;
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Uint8Array(analyser.fftSize);
    const timer = setInterval(() => {
      analyser.getByteTimeDomainData(samples);
      let peak = 0;
      for (const s of samples) peak = Math.max(peak, Math.abs(s - 128));
      setLevel(peak / 128);
    }, 100);
    return () => {
      clearInterval(timer);
      void context.close();
    };
  }, [stream]);

  function submit(event: FormEvent) {
    event.preventDefault();
    if (!stream) return;
    handedOver.current = stream;
    onJoin(stream, name.trim());
  }

  const cameras = devices.filter((d) => d.kind === "videoinput");
  const mics = devices.filter((d) => d.kind === "audioinput");
  return (
    <main className="prejoin">
      <h1>{title}</h1>
      <video ref={video} className="preview mirrored" autoPlay muted playsInline />
      <div className="meter" aria-label="Microphone level" data-level={level.toFixed(2)}>
        <div style={{ width: `${Math.round(level * 100)}%` }} />
      </div>
      <form onSubmit={submit} aria-label="Join the studio">
        <label>
          Camera
          <select value={cameraId} onChange={(e) => setCameraId(e.target.value)}>
            <option value="">Default</option>
            {cameras.map((d) => (
              <option key={d.deviceId} value={d.deviceId}>{d.label || "Camera"}</option>
            ))}
          </select>
        </label>
        <label>
          Microphone
          <select value={micId} onChange={(e) => setMicId(e.target.value)}>
            <option value="">Default</option>
            {mics.map((d) => (
              <option key={d.deviceId} value={d.deviceId}>{d.label || "Microphone"}</option>
            ))}
          </select>
        </label>
        <label>
          Display name
          <input
            name="display_name"
            value={name}
            onChange={(e) => {
              typed.current = true;
              setName(e.target.value);
            }}
            disabled={nameLocked}
            required
            maxLength={64}
          />
        </label>
        {error && <p className="error" role="alert">{error}</p>}
        <button type="submit" disabled={!stream || !name.trim()}>Join studio</button>
      </form>
    </main>
  );
}

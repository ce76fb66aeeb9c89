// Browser-side helpers the end-to-end pages share: publishing and playing
// through the edge's WHIP/WHEP-shaped endpoints, and a test picture whose
// colour changes on wall-clock half seconds, so that a receiver on the same
// machine can tell how late it sees each change.

async function gathered(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 3000);
  });
}

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch(url, { method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + token },
    body: pc.localDescription.sdp });
  const body = await response.text();
  if (response.status !== 201) throw new Error(url + " answered " + response.status + ": " + body);
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  return new URL(response.headers.get("Location"), url).toString();
}

async function publishStream(url, token, stream) {
  const pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  const location = await exchange(pc, url, token);
  return { pc, location };
}

async function playInto(url, token, video) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (e) => { stream.addTrack(e.track); video.srcObject = stream; });
  const started = performance.now();
  const location = await exchange(pc, url, token);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no frame from " + url + " in 15 s")), 15000);
    video.requestVideoFrameCallback(() => { clearTimeout(timer); resolve(); });
  });
  return { pc, location, first_frame_ms: Math.round(performance.now() - started) };
}

const FLIP_MS = 500;

/// A 1280x720 canvas at 30 fps, blue and white by turns on every
/// wall-clock half second, with the fake microphone's audio.
async function flippingCamera() {
  const canvas = document.createElement("canvas");
  canvas.width = 1280; canvas.height = 720;
  const ctx = canvas.getContext("2d");
  const draw = () => {
    const white = Math.floor(Date.now() / FLIP_MS) % 2 === 1;
    ctx.fillStyle = white ? "#ffffff" : "#0000ff";
    ctx.fillRect(0, 0, 1280, 720);
  };
  draw();
  setInterval(draw, 5);
  const stream = canvas.captureStream(30);
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  for (const track of mic.getAudioTracks()) stream.addTrack(track);
  return stream;
}

/// Watches `video` for the flipping picture; resolves with the delays, in
/// ms, between each wall-clock flip and the first frame showing it.
function measureFlips(video, count) {
  const canvas = document.createElement("canvas");
  canvas.width = 16; canvas.height = 16;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  let last = null;
  const delays = [];
  return new Promise((resolve) => {
    const onFrame = () => {
      ctx.drawImage(video, 0, 0, 16, 16);
      const [r, g] = ctx.getImageData(8, 8, 1, 1).data;
      const white = r > 160 && g > 160;
      const now = Date.now();
      if (last !== null && white !== last) {
        const flipAt = Math.floor(now / FLIP_MS) * FLIP_MS;
        // A change seen just after a boundary may belong to the previous one
        // when the path is slower than a flip; the colour says which.
        const expectedWhite = Math.floor(now / FLIP_MS) % 2 === 1;
        delays.push(now - (white === expectedWhite ? flipAt : flipAt - FLIP_MS));
      }
      last = white;
      if (delays.length >= count) resolve(delays);
      else video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  });
}

async function outboundVideo(pc) {
  const stats = [...(await pc.getStats()).values()];
  const out = stats.find((s) => s.type === "outbound-rtp" && s.kind === "video");
  return out ? { width: out.frameWidth, height: out.frameHeight, fps: out.framesPerSecond,
                 frames: out.framesEncoded, nacks: out.nackCount, plis: out.pliCount,
                 limited_by: out.qualityLimitationReason, target_bps: out.targetBitrate } : null;
}

async function inboundVideo(pc) {
  const stats = [...(await pc.getStats()).values()];
  const inb = stats.find((s) => s.type === "inbound-rtp" && s.kind === "video");
  const pair = stats.find((s) => s.type === "candidate-pair" && s.state === "succeeded");
  const local = pair && stats.find((s) => s.id === pair.localCandidateId);
  const remote = pair && stats.find((s) => s.id === pair.remoteCandidateId);
  return inb ? { width: inb.frameWidth, height: inb.frameHeight, frames: inb.framesDecoded,
                 lost: inb.packetsLost, nacks: inb.nackCount, plis: inb.pliCount,
                 pair: pair ? [local.address, remote.address] : null } : null;
}

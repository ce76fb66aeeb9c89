// A browser as a WHEP player: watches a studio's program for a while and
// reports how playback went.
//
//   node e2e/whep-play.mjs <whep_url> <viewer_token> <seconds>
//
// Prints one JSON line per step to stdout; exits non-zero on failure.
import { launch, openPage } from "./browser.mjs";

const [whepUrl, token, secondsArg] = process.argv.slice(2);
if (!whepUrl || !token) {
  console.error("usage: whep-play.mjs <whep_url> <viewer_token> [seconds]");
  process.exit(2);
}
const seconds = Number(secondsArg || 10);

const PAGE = `<!doctype html><meta charset="utf-8"><title>WHEP player</title>
<video id="program" autoplay muted playsinline></video>
<script>
async function play(whepUrl, token) {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  const stream = new MediaStream();
  pc.addEventListener("track", (e) => {
    stream.addTrack(e.track);
    document.getElementById("program").srcObject = stream;
  });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 3000);
  });
  const posted = performance.now();
  const response = await fetch(whepUrl, { method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + token },
    body: pc.localDescription.sdp });
  const body = await response.text();
  if (response.status !== 201) throw new Error("WHEP POST answered " + response.status + ": " + body);
  const location = new URL(response.headers.get("Location"), whepUrl).toString();
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  const video = document.getElementById("program");
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no video frame within 15 s: " + pc.connectionState)), 15000);
    video.requestVideoFrameCallback(() => { clearTimeout(timer); resolve(); });
  });
  return { location, first_frame_ms: Math.round(performance.now() - posted) };
}
async function report() {
  const video = document.getElementById("program");
  const stats = [...(await window.pc.getStats()).values()];
  const inVideo = stats.find((s) => s.type === "inbound-rtp" && s.kind === "video");
  const inAudio = stats.find((s) => s.type === "inbound-rtp" && s.kind === "audio");
  const pair = stats.find((s) => s.type === "candidate-pair" && s.state === "succeeded");
  const local = pair && stats.find((s) => s.id === pair.localCandidateId);
  const remote = pair && stats.find((s) => s.id === pair.remoteCandidateId);
  return {
    current_time: video.currentTime,
    width: video.videoWidth, height: video.videoHeight,
    frames_decoded: inVideo ? inVideo.framesDecoded : 0,
    video_codec: inVideo && stats.find((s) => s.id === inVideo.codecId)?.mimeType,
    audio_packets: inAudio ? inAudio.packetsReceived : 0,
    audio_codec: inAudio && stats.find((s) => s.id === inAudio.codecId)?.mimeType,
    jitter_buffer_ms: inVideo && inVideo.jitterBufferEmittedCount
      ? Math.round(1000 * inVideo.jitterBufferDelay / inVideo.jitterBufferEmittedCount) : null,
    pair: pair ? { local: local.address + ":" + local.port, remote: remote.address + ":" + remote.port } : null,
  };
}
</script>`;

const browser = await launch();
let exitCode = 0;
try {
  const page = await openPage(browser, new URL(whepUrl).origin, PAGE);
  const session = await page.evaluate(([u, t]) => play(u, t), [whepUrl, token]);
  console.log(JSON.stringify({ step: "playing", ...session, ...(await page.evaluate(() => report())) }));
  await page.waitForTimeout(seconds * 1000);
  console.log(JSON.stringify({ step: "played", ...(await page.evaluate(() => report())) }));
  const status = await page.evaluate(async ([loc, t]) => {
    const r = await fetch(loc, { method: "DELETE", headers: { Authorization: "Bearer " + t } });
    return r.status;
  }, [session.location, token]);
  console.log(JSON.stringify({ step: "deleted", status }));
} catch (err) {
  console.error(`whep-play: ${err.message}`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);

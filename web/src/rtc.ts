// WebRTC through the edge: publishing a local stream as one of the
// participant's sources, and playing any source of the studio. Each is one
// offer/answer over HTTP (WHIP/WHEP-shaped) to the edge, authorised by the
// participant's studio token; candidates are gathered before the offer is
// sent, so no trickle is needed.

async function gathered(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === "complete") return;
  await new Promise<void>((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

async function exchange(pc: RTCPeerConnection, url: string, token: string): Promise<string> {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${token}` },
    body: pc.localDescription?.sdp ?? "",
  });
  const body = await response.text();
  if (response.status !== 201) {
    let message = body;
    try {
      message = (JSON.parse(body) as { error: { message: string } }).error.message;
    } catch {
      // not JSON: keep the text
    }
    throw new Error(`the edge refused (${response.status}): ${message}`);
  }
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  return new URL(response.headers.get("Location") ?? "", url).toString();
}

/// One peer connection to the edge, ended with `close`.
export class EdgeSession {
  private constructor(
    readonly pc: RTCPeerConnection,
    private readonly location: string,
    private readonly token: string,
  ) {}

  static async publish(edge: string, studio: string, source: string, token: string, stream: MediaStream): Promise<EdgeSession> {
    const pc = new RTCPeerConnection();
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
    try {
      const location = await exchange(pc, `${edge}/rtc/${studio}/publish/${source}`, token);
      return new EdgeSession(pc, location, token);
    } catch (err) {
      pc.close();
      throw err;
    }
  }

  static async play(edge: string, studio: string, source: string, token: string, onStream: (stream: MediaStream) => void): Promise<EdgeSession> {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.addEventListener("track", (event) => {
      stream.addTrack(event.track);
      onStream(stream);
    });
    try {
      const location = await exchange(pc, `${edge}/rtc/${studio}/play/${source}`, token);
      return new EdgeSession(pc, location, token);
    } catch (err) {
      pc.close();
      throw err;
    }
  }

  /// Replaces the sent track of a kind (switching camera or microphone).
  async replace(track: MediaStreamTrack): Promise<void> {
    const sender = this.pc.getSenders().find((s) => s.track?.kind === track.kind);
    await sender?.replaceTrack(track);
  }

  get failed(): boolean {
    return this.pc.connectionState === "failed" || this.pc.connectionState === "closed";
  }

  /// Ends the session at the edge, then here.
  close(): void {
    void fetch(this.location, { method: "DELETE", headers: { Authorization: `Bearer ${this.token}` } })
      .catch(() => undefined)
      .finally(() => this.pc.close());
  }
}

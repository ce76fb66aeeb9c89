// The control plane's HTTP API as the app uses it. Account tokens live in
// localStorage; a guest's pass lives there too, per studio, so a reload
// brings the guest back as the same participant.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Tokens {
  access_token: string;
  refresh_token: string;
}

const TOKENS_KEY = "buildstream.tokens";

export function signedIn(): boolean {
  return localStorage.getItem(TOKENS_KEY) !== null;
}

function tokens(): Tokens | null {
  const raw = localStorage.getItem(TOKENS_KEY);
  return raw ? (JSON.parse(raw) as Tokens) : null;
}

function storeTokens(value: Tokens | null): void {
  if (value) localStorage.setItem(TOKENS_KEY, JSON.stringify(value));
  else localStorage.removeItem(TOKENS_KEY);
}

async function send(method: string, path: string, token: string | null, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers["Authorization"] = `Bearer ${token}`;
  return fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

async function parse<T>(response: Response): Promise<T> {
  const text = await response.text();
  const json: unknown = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = (json as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(response.status, error?.code ?? "error", error?.message ?? response.statusText);
  }
  return json as T;
}

/// Calls the API as the signed-in user, refreshing the access token once
/// when it has expired.
export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const current = tokens();
  let response = await send(method, path, current?.access_token ?? null, body);
  if (response.status === 401 && current) {
    const refreshed = await send("POST", "/api/v1/sessions/refresh", null, {
      refresh_token: current.refresh_token,
    });
    if (!refreshed.ok) {
      storeTokens(null);
      throw new ApiError(401, "unauthorized", "your session ended; sign in again");
    }
    storeTokens(await refreshed.json());
    response = await send(method, path, tokens()?.access_token ?? null, body);
  }
  return parse<T>(response);
}

/// Calls the API with an explicit token (a guest's).
export async function callWith<T>(token: string | null, method: string, path: string, body?: unknown): Promise<T> {
  return parse<T>(await send(method, path, token, body));
}

export function accessToken(): string | null {
  return tokens()?.access_token ?? null;
}

export async function signUp(email: string, password: string, displayName: string): Promise<void> {
  await callWith(null, "POST", "/api/v1/users", { email, password, display_name: displayName });
  await signIn(email, password);
}

export async function signIn(email: string, password: string): Promise<void> {
  storeTokens(await callWith<Tokens>(null, "POST", "/api/v1/sessions", { email, password }));
}

export async function signOut(): Promise<void> {
  const current = tokens();
  storeTokens(null);
  if (current) {
    await send("DELETE", "/api/v1/sessions", current.access_token, { refresh_token: current.refresh_token }).catch(
      () => undefined,
    );
  }
}

// ---- the studio's documents ------------------------------------------

export type Layout = "solo" | "split" | "grid" | "pip" | "screen";

export interface Banner {
  text: string;
  visible: boolean;
}

export interface Background {
  color?: string;
  image?: string | null;
}

export interface Scene {
  layout: Layout;
  on_stage: string[];
  banner: Banner;
  ticker?: Banner;
  banners?: string[];
  logo?: string | null;
  background: Background;
  brand_color: string;
}

export interface Studio {
  id: string;
  name: string;
  description?: string;
  created_at: string;
  live?: boolean;
}

export interface Participant {
  id: string;
  name: string;
  role: "host" | "guest";
  state: "waiting" | "backstage" | "stage";
  online: boolean;
  camera_source: string;
  screen_source: string;
  sharing: boolean;
}

export interface Room {
  you: Participant;
  participants: Participant[];
  scene: Scene;
}

export interface Joined {
  media_token: string;
  edge_url: string;
  room: Room;
}

export interface Destination {
  id: string;
  platform: string;
  name: string;
  url: string;
  stream_key_hint: string;
}

export interface DestinationStatus {
  id: string;
  name: string;
  platform: string;
  state: string;
  last_error?: string | null;
}

export interface Broadcast {
  state: string;
  failure?: string;
  started_at?: string | null;
  destinations: DestinationStatus[];
  whep_url?: string;
  viewer_token?: string;
}

export interface Source {
  id: string;
  kind: string;
  name: string;
}

/// The guest pass for a studio, kept across reloads.
export function guestToken(studio: string): string | null {
  return localStorage.getItem(`buildstream.guest.${studio}`);
}

export function storeGuestToken(studio: string, token: string): void {
  localStorage.setItem(`buildstream.guest.${studio}`, token);
}

/** Runtime configuration, read on the server at request time (never baked in at build). */

const DEFAULT_API_URL = "http://127.0.0.1:8000";

export function apiUrl(): string {
  return (process.env.RECOMMNDR_API_URL || DEFAULT_API_URL).replace(/\/+$/, "");
}

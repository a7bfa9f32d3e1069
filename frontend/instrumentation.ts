/** Runs once when the Next.js server starts (before it serves a request): the socket-address stamp
 * the admin route relies on (`lib/peer.ts`). Node.js only: the edge runtime has no sockets. */
export async function register(): Promise<void> {
  if (process.env.NEXT_RUNTIME === "nodejs") {
    const { stampPeers } = await import("./lib/peer");
    stampPeers();
  }
}

"use client";

export default function ErrorPage({ error, reset }: { error: Error & { digest?: string }; reset: () => void }) {
  return (
    <div className="message" role="alert">
      <h1>Something went wrong</h1>
      <p>
        The shop could not load this page{error.digest ? ` (reference ${error.digest})` : ""}. The recommendation
        service may be starting or unreachable.
      </p>
      <button type="button" onClick={reset}>
        Try again
      </button>
    </div>
  );
}

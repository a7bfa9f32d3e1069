"use client";

import { useRef, type ReactNode } from "react";

/** A horizontally scrolling row: scroll, swipe, Tab through its links, or use the buttons. */
export function Carousel({ label, children }: { label: string; children: ReactNode }) {
  const track = useRef<HTMLUListElement>(null);
  const scroll = (direction: 1 | -1) =>
    track.current?.scrollBy({ left: direction * track.current.clientWidth * 0.8, behavior: "smooth" });
  return (
    <div className="carousel">
      <button type="button" className="carousel-button" aria-label={`Scroll ${label} left`} onClick={() => scroll(-1)}>
        ‹
      </button>
      <ul ref={track} className="carousel-track" aria-label={label}>
        {children}
      </ul>
      <button type="button" className="carousel-button" aria-label={`Scroll ${label} right`} onClick={() => scroll(1)}>
        ›
      </button>
    </div>
  );
}

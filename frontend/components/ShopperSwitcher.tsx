"use client";

import { useRouter } from "next/navigation";
import { useState, useTransition, type FormEvent } from "react";

import { SHOPPER_COOKIE, newShopperId } from "@/lib/shopper-cookie";
import type { Shopper } from "@/lib/types";

const NEW = "new";

/** Demo control: shop as one of the real shoppers, or as a brand-new one (cold start). */
export function ShopperSwitcher({ shoppers, current }: { shoppers: Shopper[]; current: number }) {
  const router = useRouter();
  const [pending, startTransition] = useTransition();
  const [choice, setChoice] = useState(String(current));
  const known = shoppers.some((s) => s.user_id === current);

  function submit(e: FormEvent<HTMLFormElement>) {
    e.preventDefault();
    const id = choice === NEW ? newShopperId() : Number(choice);
    document.cookie = `${SHOPPER_COOKIE}=${id}; path=/; max-age=31536000; samesite=lax`;
    setChoice(String(id));
    startTransition(() => router.refresh());
  }

  return (
    <form className="switcher" onSubmit={submit} aria-label="Demo shopper">
      <label htmlFor="shopper">Shopping as</label>
      <select id="shopper" value={choice} onChange={(e) => setChoice(e.target.value)}>
        {shoppers.map((s) => (
          <option key={s.user_id} value={s.user_id}>
            #{s.user_id} · {s.favourite_category}
          </option>
        ))}
        {!known && <option value={current}>New shopper #{current}</option>}
        <option value={NEW}>A brand-new shopper (cold start)</option>
      </select>
      <button type="submit" disabled={pending}>
        {pending ? "Switching…" : "Switch"}
      </button>
    </form>
  );
}

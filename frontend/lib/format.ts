const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

export function formatPrice(value: number): string {
  return money.format(value);
}

/** Query-string value as a positive number, or undefined. */
export function positiveNumber(value: string | string[] | undefined): number | undefined {
  if (typeof value !== "string" || value.trim() === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** Query-string value as a trimmed string, or undefined. */
export function text(value: string | string[] | undefined): string | undefined {
  const v = typeof value === "string" ? value.trim() : undefined;
  return v ? v : undefined;
}

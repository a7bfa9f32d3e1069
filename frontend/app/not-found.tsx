import Link from "next/link";

export default function NotFound() {
  return (
    <div className="message">
      <h1>Not found</h1>
      <p>
        There is no such page or product. <Link href="/products">Browse the catalogue</Link>.
      </p>
    </div>
  );
}

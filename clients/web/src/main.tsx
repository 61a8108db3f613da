import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { AvatarChatWidget } from "./AvatarChatWidget";
import "./styles.css";

const params = new URLSearchParams(window.location.search);

/** The bridge's API key, when it needs one: given once as `#key=...` (a fragment never reaches a server or a
 * Referer), kept for this tab in sessionStorage and taken out of the address bar. */
function pageKey(): string {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const given = fragment.get("key");
  if (given !== null) {
    sessionStorage.setItem("avatar-api-key", given);
    fragment.delete("key");
    const url = new URL(window.location.href);
    url.hash = fragment.toString();
    window.history.replaceState(null, "", url);
  }
  return sessionStorage.getItem("avatar-api-key") ?? "";
}
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <AvatarChatWidget
      video={params.get("video") !== "0"}
      language={params.get("language") ?? ""}
      avatarId={params.get("avatar") ?? ""}
      apiKey={pageKey()}
      onAvatarChange={(id) => {
        // The page's URL names the avatar picked, so a reload (or a shared link) shows the same one.
        const url = new URL(window.location.href);
        url.searchParams.set("avatar", id);
        window.history.replaceState(null, "", url);
      }}
    />
  </StrictMode>,
);

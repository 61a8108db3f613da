import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { AvatarChatWidget } from "./AvatarChatWidget";
import "./styles.css";

const params = new URLSearchParams(window.location.search);
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <AvatarChatWidget
      video={params.get("video") !== "0"}
      language={params.get("language") ?? ""}
      avatarId={params.get("avatar") ?? ""}
      onAvatarChange={(id) => {
        // The page's URL names the avatar picked, so a reload (or a shared link) shows the same one.
        const url = new URL(window.location.href);
        url.searchParams.set("avatar", id);
        window.history.replaceState(null, "", url);
      }}
    />
  </StrictMode>,
);

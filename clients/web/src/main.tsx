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
    />
  </StrictMode>,
);

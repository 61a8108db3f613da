export { AvatarChatWidget, type AvatarChatWidgetProps, type WidgetState } from "./AvatarChatWidget";
export { ApiError, interact, type InteractResult } from "./api";
export { sampleTrack, type AnimationTrack } from "./track";

/**
 * Draws the avatar's portrait, animated by the face model (faceMesh.ts), with WebGL: the browser's twin of the
 * server's piecewise-affine renderer (avatar_server/animation/portrait.py).
 *
 * Per frame: pose the vertices (drivers, lips meet, head motion), then two draw calls over one position
 * buffer: the skin triangles and the mouth triangles textured from the portrait at the rest vertices (between
 * the lips the portrait shows until the mouth image fades in), then the mouth triangles textured from the mouth
 * image at (u, v) with per-vertex opacity, blended over the skin. As the server blends the opening's edge a
 * pixel out over the lips, the mouth triangles are drawn a pixel larger (the inner lips' vertices moved a pixel
 * up, down or, at the corners, sideways), so no portrait pixel of the lips' inner edge (teeth, in a smiling
 * portrait) shows as a seam. Like the server, the portrait is resized
 * once to the canvas's size and then sampled bilinearly (cheap enough for SwiftShader, WebGL on the CPU).
 * Without WebGL the canvas shows the still portrait (canvas 2D).
 */

import { mouthUva, pose, type FaceData } from "./faceMesh";
import type { Weights } from "./track";

export interface FaceImages {
  portrait: TexImageSource & CanvasImageSource;
  mouth: TexImageSource;
}

type GL = WebGLRenderingContext | WebGL2RenderingContext;

const SKIN_VS = `
attribute vec2 position;
attribute vec2 texcoord;
varying vec2 v_uv;
void main() {
  v_uv = texcoord;
  gl_Position = vec4(position.x * 2.0 - 1.0, 1.0 - position.y * 2.0, 0.0, 1.0);
}`;
const SKIN_FS = `
precision mediump float;
uniform sampler2D portrait;
varying vec2 v_uv;
void main() {
  gl_FragColor = vec4(texture2D(portrait, v_uv).rgb, 1.0);
}`;
// The mouth image is addressed like the server's: u, v in 0..1 span its first to last pixel centres.
const MOUTH_VS = `
attribute vec2 position;
attribute vec3 uva;
uniform vec2 mouthSize;
varying vec2 v_uv;
varying float v_alpha;
void main() {
  v_uv = (uva.xy * (mouthSize - 1.0) + 0.5) / mouthSize;
  v_alpha = uva.z;
  gl_Position = vec4(position.x * 2.0 - 1.0, 1.0 - position.y * 2.0, 0.0, 1.0);
}`;
const MOUTH_FS = `
precision mediump float;
uniform sampler2D mouth;
varying vec2 v_uv;
varying float v_alpha;
void main() {
  gl_FragColor = vec4(texture2D(mouth, v_uv).rgb, clamp(v_alpha, 0.0, 1.0));
}`;

interface Program {
  program: WebGLProgram;
  attribs: Record<string, number>;
  uniforms: Record<string, WebGLUniformLocation | null>;
}

interface Resources {
  skin: Program;
  mouth: Program;
  position: WebGLBuffer;
  texcoord: WebGLBuffer;
  mouthVertices: WebGLBuffer; // x, y, u, v, alpha per vertex
  skinIndex: WebGLBuffer;
  mouthIndex: WebGLBuffer;
  portrait: WebGLTexture;
  mouthTexture: WebGLTexture;
  skinCount: number;
  mouthCount: number;
  mouthSize: [number, number];
}

function sizeOf(image: TexImageSource): [number, number] {
  if (typeof HTMLImageElement !== "undefined" && image instanceof HTMLImageElement) {
    return [image.naturalWidth, image.naturalHeight];
  }
  if (typeof VideoFrame !== "undefined" && image instanceof VideoFrame) return [image.displayWidth, image.displayHeight];
  if (typeof HTMLVideoElement !== "undefined" && image instanceof HTMLVideoElement) {
    return [image.videoWidth, image.videoHeight];
  }
  return [(image as { width: number }).width, (image as { height: number }).height];
}

export class FaceRenderer {
  /** "webgl" (animated), "2d" (the still portrait) or "none" (no context at all). */
  readonly mode: "webgl" | "2d" | "none";
  /** Frames drawn so far (for measuring the frame rate). */
  frames = 0;
  private gl: GL | null = null;
  private ctx2d: CanvasRenderingContext2D | null = null;
  private res: Resources | null = null;
  private face: FaceData | null = null;
  private images: FaceImages | null = null;
  private posed = new Float32Array(0);
  private uva = new Float32Array(0);
  private mouthVerts = new Float32Array(0); // per vertex x, y, u, v, alpha: the mouth's own draw
  private lost = false;

  constructor(private readonly canvas: HTMLCanvasElement) {
    const options: WebGLContextAttributes = {
      alpha: false,
      antialias: false, // as the server's renderer; multisampling costs a CPU-rendered WebGL dearly
      depth: false,
      stencil: false,
      premultipliedAlpha: false,
      preserveDrawingBuffer: true, // the page (and its tests) may read the face back at any time
    };
    let gl: GL | null = null;
    try {
      gl = (canvas.getContext("webgl2", options) as WebGL2RenderingContext | null) ??
        (canvas.getContext("webgl", options) as WebGLRenderingContext | null);
    } catch {
      gl = null;
    }
    if (gl) {
      this.gl = gl;
      this.mode = "webgl";
      canvas.addEventListener("webglcontextlost", this.onLost);
      canvas.addEventListener("webglcontextrestored", this.onRestored);
    } else {
      this.ctx2d = canvas.getContext("2d");
      this.mode = this.ctx2d ? "2d" : "none";
    }
    canvas.dataset.renderer = this.mode;
  }

  /** Show another face (its model and its two images, already loaded). */
  setFace(face: FaceData, images: FaceImages): void {
    this.face = face;
    this.images = images;
    const n = face.vertices.length / 2;
    this.posed = new Float32Array(2 * n);
    this.uva = new Float32Array(3 * n);
    this.mouthVerts = new Float32Array(5 * n);
    if (this.gl && !this.lost) {
      this.release();
      this.res = this.upload(this.gl, face, images);
    }
  }

  /** One frame: the face for these track weights, the head's idle motion at t seconds. */
  draw(weights: Weights, t: number): void {
    const face = this.face;
    if (!face || !this.images) return;
    if (this.ctx2d) {
      this.ctx2d.drawImage(this.images.portrait, 0, 0, this.canvas.width, this.canvas.height);
      this.frames++;
      return;
    }
    const gl = this.gl;
    const res = this.res;
    if (!gl || !res || this.lost) return;
    const posed = this.posed;
    pose(face, weights, t, posed);
    mouthUva(face, posed, this.uva);
    gl.viewport(0, 0, gl.drawingBufferWidth, gl.drawingBufferHeight);
    gl.bindBuffer(gl.ARRAY_BUFFER, res.position);
    gl.bufferSubData(gl.ARRAY_BUFFER, 0, posed);

    // 1. The skin and the inside of the lips, textured from the portrait at the rest vertices.
    gl.disable(gl.BLEND);
    gl.useProgram(res.skin.program);
    this.attrib(gl, res.skin.attribs.position, res.position, 2);
    this.attrib(gl, res.skin.attribs.texcoord, res.texcoord, 2);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, res.portrait);
    gl.uniform1i(res.skin.uniforms.portrait, 0);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, res.skinIndex);
    gl.drawElements(gl.TRIANGLES, res.skinCount, gl.UNSIGNED_SHORT, 0);
    gl.disableVertexAttribArray(res.skin.attribs.texcoord);

    // 2. The inside of the mouth, where it shows at all.
    let open = false;
    for (let i = 2; i < this.uva.length; i += 3) {
      if (this.uva[i] > 0) {
        open = true;
        break;
      }
    }
    if (open) {
      const mv = this.mouthVerts;
      const uva = this.uva;
      const ring = face.mouthRing;
      const last = Math.floor(ring.length / 2); // the upper lip is ring[0..last], corners included
      const grow = 1 / Math.max(1, this.canvas.width);
      ring.forEach((v, i) => {
        const [dx, dy] = i === 0 ? [-grow, 0] : i === last ? [grow, 0] : i < last ? [0, -grow] : [0, grow];
        mv.set([posed[2 * v] + dx, posed[2 * v + 1] + dy, uva[3 * v], uva[3 * v + 1], uva[3 * v + 2]], 5 * v);
      });
      gl.bindBuffer(gl.ARRAY_BUFFER, res.mouthVertices);
      gl.bufferSubData(gl.ARRAY_BUFFER, 0, mv);
      gl.enable(gl.BLEND);
      gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
      gl.useProgram(res.mouth.program);
      gl.enableVertexAttribArray(res.mouth.attribs.position);
      gl.vertexAttribPointer(res.mouth.attribs.position, 2, gl.FLOAT, false, 20, 0);
      gl.enableVertexAttribArray(res.mouth.attribs.uva);
      gl.vertexAttribPointer(res.mouth.attribs.uva, 3, gl.FLOAT, false, 20, 8);
      gl.bindTexture(gl.TEXTURE_2D, res.mouthTexture);
      gl.uniform1i(res.mouth.uniforms.mouth, 0);
      gl.uniform2f(res.mouth.uniforms.mouthSize, res.mouthSize[0], res.mouthSize[1]);
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, res.mouthIndex);
      gl.drawElements(gl.TRIANGLES, res.mouthCount, gl.UNSIGNED_SHORT, 0);
      gl.disableVertexAttribArray(res.mouth.attribs.uva);
    }
    this.frames++;
  }

  /** Frees what this renderer made on the GPU (the canvas keeps its context: React may mount it again). */
  dispose(): void {
    this.release();
    this.canvas.removeEventListener("webglcontextlost", this.onLost);
    this.canvas.removeEventListener("webglcontextrestored", this.onRestored);
    this.face = null;
    this.images = null;
  }

  private attrib(gl: GL, location: number, buffer: WebGLBuffer, size: number): void {
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.enableVertexAttribArray(location);
    gl.vertexAttribPointer(location, size, gl.FLOAT, false, 0, 0);
  }

  private readonly onLost = (e: Event): void => {
    e.preventDefault(); // ask for the context back
    this.lost = true;
    this.res = null; // its objects died with the context
  };

  private readonly onRestored = (): void => {
    this.lost = false;
    if (this.gl && this.face && this.images) this.res = this.upload(this.gl, this.face, this.images);
  };

  private release(): void {
    const gl = this.gl;
    const res = this.res;
    this.res = null;
    if (!gl || !res || this.lost) return;
    for (const b of [res.position, res.texcoord, res.mouthVertices, res.skinIndex, res.mouthIndex]) gl.deleteBuffer(b);
    gl.deleteTexture(res.portrait);
    gl.deleteTexture(res.mouthTexture);
    for (const p of [res.skin, res.mouth]) gl.deleteProgram(p.program);
  }

  private upload(gl: GL, face: FaceData, images: FaceImages): Resources {
    const n = face.vertices.length / 2;
    if (n > 65535) throw new Error("face: too many vertices for 16-bit indices");
    const positions = new Float32Array(2 * n);
    const texcoords = Float32Array.from(face.vertices);
    const skinIndices = new Uint16Array(face.triangles.length + face.mouthTriangles.length);
    skinIndices.set(face.triangles);
    skinIndices.set(face.mouthTriangles, face.triangles.length);
    const buffer = (target: number, data: BufferSource, usage: number): WebGLBuffer => {
      const b = gl.createBuffer();
      if (!b) throw new Error("WebGL: no buffer");
      gl.bindBuffer(target, b);
      gl.bufferData(target, data, usage);
      return b;
    };
    const skin = program(gl, SKIN_VS, SKIN_FS, ["position", "texcoord"], ["portrait"]);
    const mouth = program(gl, MOUTH_VS, MOUTH_FS, ["position", "uva"], ["mouth", "mouthSize"]);
    return {
      skin,
      mouth,
      position: buffer(gl.ARRAY_BUFFER, positions, gl.DYNAMIC_DRAW),
      texcoord: buffer(gl.ARRAY_BUFFER, texcoords, gl.STATIC_DRAW),
      mouthVertices: buffer(gl.ARRAY_BUFFER, new Float32Array(5 * n), gl.DYNAMIC_DRAW),
      skinIndex: buffer(gl.ELEMENT_ARRAY_BUFFER, skinIndices, gl.STATIC_DRAW),
      mouthIndex: buffer(gl.ELEMENT_ARRAY_BUFFER, Uint16Array.from(face.mouthTriangles), gl.STATIC_DRAW),
      portrait: texture(gl, resized(images.portrait, this.canvas.width, this.canvas.height)),
      mouthTexture: texture(gl, images.mouth),
      skinCount: skinIndices.length,
      mouthCount: face.mouthTriangles.length,
      mouthSize: sizeOf(images.mouth),
    };
  }
}

function program(gl: GL, vs: string, fs: string, attribs: string[], uniforms: string[]): Program {
  const shader = (type: number, source: string): WebGLShader => {
    const s = gl.createShader(type);
    if (!s) throw new Error("WebGL: no shader");
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(`WebGL shader: ${gl.getShaderInfoLog(s)}`);
    return s;
  };
  const p = gl.createProgram();
  if (!p) throw new Error("WebGL: no program");
  const v = shader(gl.VERTEX_SHADER, vs);
  const f = shader(gl.FRAGMENT_SHADER, fs);
  gl.attachShader(p, v);
  gl.attachShader(p, f);
  gl.linkProgram(p);
  gl.deleteShader(v);
  gl.deleteShader(f);
  if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(`WebGL program: ${gl.getProgramInfoLog(p)}`);
  return {
    program: p,
    attribs: Object.fromEntries(attribs.map((a) => [a, gl.getAttribLocation(p, a)])),
    uniforms: Object.fromEntries(uniforms.map((u) => [u, gl.getUniformLocation(p, u)])),
  };
}

function texture(gl: GL, image: TexImageSource): WebGLTexture {
  const t = gl.createTexture();
  if (!t) throw new Error("WebGL: no texture");
  gl.bindTexture(gl.TEXTURE_2D, t);
  gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false); // the image's top row is v = 0, as in the face model
  gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
  gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, image);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  return t;
}

/** The portrait at the canvas's size (smoothly, once), as the server resizes its crop before warping it. */
function resized(image: TexImageSource & CanvasImageSource, width: number, height: number): TexImageSource {
  const [w, h] = sizeOf(image);
  if (w === width && h === height) return image;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  if (!ctx) return image;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(image, 0, 0, width, height);
  return canvas;
}

/** Loads an image (for a texture), with CORS allowed so a bridge on another origin works too. */
export function loadImage(url: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.crossOrigin = "anonymous";
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`image ${url} could not be loaded`));
    image.src = url;
  });
}

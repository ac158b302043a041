/**
 * ComfyUI's request and error shapes the simulator answers with, beyond core/comfy/types.ts
 * (kept here so the simulator does not race the client side over that shared file).
 */
import type { ApiGraph } from '../comfy/types.js';

/** `POST /prompt`'s body. */
export interface PromptRequest {
  prompt: ApiGraph;
  client_id?: string;
  /** Newer ComfyUI lets the client choose the id. */
  prompt_id?: string;
  /** Queue position: `front: true` jumps the queue, `number` sets it. */
  number?: number;
  front?: boolean;
  extra_data?: { extra_pnginfo?: Record<string, unknown>; [key: string]: unknown };
}

/** One problem, as ComfyUI reports it (validation errors and their summary). */
export interface ComfyError {
  type: string;
  message: string;
  details: string;
  extra_info: Record<string, unknown>;
}

/** `node_errors[<node id>]` of a rejected prompt. */
export interface NodeError {
  errors: ComfyError[];
  dependent_outputs: string[];
  class_type: string;
}

/** `POST /prompt` answered 400. */
export interface PromptErrorBody {
  error: ComfyError;
  node_errors: Record<string, NodeError>;
}

/** `POST /prompt` answered 200. */
export interface PromptAccepted {
  prompt_id: string;
  number: number;
  node_errors: Record<string, NodeError>;
}

/** `[number, prompt_id, prompt, extra_data, outputs_to_execute]`, as `/queue` and `/history` show a job. */
export type QueueTuple = [number, string, ApiGraph, Record<string, unknown>, string[]];

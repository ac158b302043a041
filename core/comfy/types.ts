/**
 * The shapes of ComfyUI's HTTP and websocket API that vai-mcp uses, shared by the client
 * (core/comfy/client.ts), the workflow preparation (core/comfy/workflow.ts) and the `local`
 * simulator (core/comfy/simulator.ts). They follow ComfyUI's own JSON, hence snake_case.
 */

/** One node of an API-format graph ("Export (API)" in ComfyUI). */
export interface ApiNode {
  class_type: string;
  /** A literal value, or a link `[source node id, output index]`. */
  inputs: Record<string, unknown>;
  _meta?: { title?: string };
}

/** An API-format graph: node id -> node. */
export type ApiGraph = Record<string, ApiNode>;

/** Per node id of a queued graph: its name in progress lines (title, else class type) and the nodes it takes input from. */
export type NodeMap = Record<string, { name: string; from: string[] }>;

/** `[type or list of choices, options]`, as `/object_info` describes one input. */
export type InputSpec = [string | unknown[], Record<string, unknown>?];

/** One node type as `GET /object_info` describes it. */
export interface NodeInfo {
  input: {
    required?: Record<string, InputSpec>;
    optional?: Record<string, InputSpec>;
    hidden?: Record<string, unknown>;
  };
  input_order?: { required?: string[]; optional?: string[] };
  output: string[];
  output_is_list?: boolean[];
  output_name: string[];
  name: string;
  display_name?: string;
  description?: string;
  category?: string;
  python_module?: string;
  output_node: boolean;
}

/** `GET /object_info`: node type -> description. */
export type ObjectInfo = Record<string, NodeInfo>;

/** A file ComfyUI made or holds: the query of `GET /view`. */
export interface ComfyFileRef {
  filename: string;
  subfolder: string;
  /** `output`, `input` or `temp`. */
  type: string;
}

/** One entry of `GET /history/{prompt_id}`. */
export interface HistoryEntry {
  /** `[number, prompt_id, graph, extra_data, outputs_to_execute]` */
  prompt: unknown[];
  /** node id -> what it produced (`images` for SaveImage/PreviewImage; other keys pass through). */
  outputs: Record<string, { images?: ComfyFileRef[]; [key: string]: unknown }>;
  status?: {
    status_str: 'success' | 'error';
    completed: boolean;
    /** `[event name, data]`, e.g. `["execution_error", {...}]`. */
    messages: [string, Record<string, unknown>][];
  };
  meta?: Record<string, unknown>;
}

/** One row of `GET /queue` (`queue_running` / `queue_pending`). */
export interface QueueItem {
  number: number;
  prompt_id: string;
}

/** The `/ws` messages vai-mcp reads (ComfyUI sends more; they are ignored). */
export type ComfyEvent =
  | { type: 'status'; data: { status?: { exec_info?: { queue_remaining?: number } }; sid?: string } }
  | { type: 'execution_start'; data: { prompt_id: string } }
  | { type: 'execution_cached'; data: { prompt_id: string; nodes: string[] } }
  | { type: 'executing'; data: { prompt_id: string; node: string | null } }
  | { type: 'progress'; data: { prompt_id: string; node: string; value: number; max: number } }
  | { type: 'executed'; data: { prompt_id: string; node: string; output: Record<string, unknown> } }
  | { type: 'execution_success'; data: { prompt_id: string } }
  | { type: 'execution_error'; data: { prompt_id: string; node_id: string; node_type: string; exception_message: string } }
  | { type: 'execution_interrupted'; data: { prompt_id: string; node_id?: string; node_type?: string } };

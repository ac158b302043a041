/**
 * The dead man's switch of a Vast box: a small POSIX shell watchdog, written inline in the box's
 * `onstart` and started in the background before the image's entrypoint. The supervisor touches
 * a heartbeat file on the box over SSH at least once a minute; when it has not for `deadman_s`
 * (counted from the box's boot, and never before `max(deadman_s, ready_timeout_s)` after it) and
 * ComfyUI's queue is empty, the box stops (or destroys) itself with its own `CONTAINER_API_KEY`,
 * which can do nothing but that to this one box. So a dead laptop cannot leave a box billing.
 *
 * Its settings travel in the box's environment (each value well under Vast's 256 characters); the
 * API address is the one the supervisor uses (VAST_URL), so a test can point both at a fake API.
 */
import { deadmanActionOf, deadmanOf } from '../../config/money.js';
import type { Config } from '../../config/config.js';

/** The command the supervisor runs on the box: the watchdog counts from its last run. */
export const HEARTBEAT_FILE = '/tmp/vai-heartbeat';
export const HEARTBEAT_COMMAND = `touch ${HEARTBEAT_FILE}`;
/** Vast's limits: onstart (with args) at most 4096 characters, each env value at most 256. */
export const MAX_ONSTART_CHARS = 4096;
export const MAX_ENV_VALUE_CHARS = 256;

/** How often the supervisor touches the heartbeat, and how often the watchdog looks, in seconds. */
export const HEARTBEAT_EVERY_S = 30;

/**
 * VAI_DEADMAN_SCALE: the fraction of the switch's times to use (tests use a fake API and fake
 * boxes and cannot wait half an hour); 1 everywhere else.
 */
export function deadmanScale(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.VAI_DEADMAN_SCALE ?? 1);
  return Number.isFinite(v) && v > 0 && v <= 1 ? v : 1;
}

/*
 * `$VAI_HEARTBEAT_FILE` and `$VAI_WATCHDOG_LOG` let a test box keep its files apart from another's
 * (fake boxes share one filesystem with the test machine); on a real box they are unset. The file's age is read with `date -r` (GNU,
 * busybox), else `stat -c %Y`. A queue that cannot be read counts as empty: a box whose ComfyUI
 * does not answer runs nothing for anyone.
 */
const WATCHDOG = `vai_watchdog() {
HB=\${VAI_HEARTBEAT_FILE:-${HEARTBEAT_FILE}}
rm -f "$HB"
BOOT=$(date +%s)
if command -v curl >/dev/null 2>&1; then
get() { curl -fsS -m 10 "$1"; }
api() { curl -fsS -m 30 -X "$1" -H "Authorization: Bearer $CONTAINER_API_KEY" -H 'Content-Type: application/json' -d "$2" "$VAI_VAST_URL/api/v0/instances/$CONTAINER_ID/"; }
else
get() { wget -qO- -T 10 "$1"; }
api() { wget -qO- -T 30 --method="$1" --header="Authorization: Bearer $CONTAINER_API_KEY" --header='Content-Type: application/json' --body-data="$2" "$VAI_VAST_URL/api/v0/instances/$CONTAINER_ID/"; }
fi
while sleep "$VAI_DEADMAN_TICK_S"; do
NOW=$(date +%s)
[ $((NOW - BOOT)) -ge "$VAI_DEADMAN_MIN_S" ] || continue
SEEN=$BOOT
if [ -f "$HB" ]; then SEEN=$(date -r "$HB" +%s 2>/dev/null || stat -c %Y "$HB"); fi
[ $((NOW - SEEN)) -ge "$VAI_DEADMAN_S" ] || continue
Q=$(get "http://127.0.0.1:$VAI_COMFY_PORT/queue" 2>/dev/null | tr -d ' \\n\\r\\t')
case "$Q" in ''|*'"queue_running":[]'*) ;; *) continue ;; esac
case "$Q" in ''|*'"queue_pending":[]'*) ;; *) continue ;; esac
echo "vai-mcp watchdog: no word from the supervisor for $((NOW - SEEN)) s (deadman_s = $VAI_DEADMAN_S) and nothing queued: $VAI_DEADMAN_ACTION"
if [ "$VAI_DEADMAN_ACTION" = destroy ]; then api DELETE '{}'; else api PUT '{"state": "stopped"}'; fi && break
done
}
(vai_watchdog) >>"\${VAI_WATCHDOG_LOG:-/var/log/vai-watchdog.log}" 2>&1 &
`;

/** The box's onstart: the watchdog (unless `deadman_s` is 0), then the image's own entrypoint. */
export function onstartFor(config: Config, entrypoint: string): string {
  return deadmanOf(config) > 0 ? `${WATCHDOG}${entrypoint}` : entrypoint;
}

/** The watchdog's settings, for the box's environment. */
export function watchdogEnv(config: Config, vastUrl: string, scale = deadmanScale()): Record<string, string> {
  const deadman = deadmanOf(config);
  if (deadman === 0) return {};
  const s = (seconds: number) => String(Math.max(1, Math.round(seconds * scale)));
  return {
    VAI_VAST_URL: vastUrl,
    VAI_DEADMAN_S: s(deadman),
    VAI_DEADMAN_MIN_S: s(Math.max(deadman, config.instance_config.ready_timeout_s)),
    VAI_DEADMAN_TICK_S: s(HEARTBEAT_EVERY_S),
    VAI_DEADMAN_ACTION: deadmanActionOf(config),
    VAI_COMFY_PORT: String(config.instance_config.remote_port),
  };
}

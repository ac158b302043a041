/**
 * Models and node packs put on a box by the box itself, over its SSH link: downloads run on the
 * box (its bandwidth, not the user's), packs are cloned there. The scripts take their arguments
 * on the command line and any token on stdin (as curl's config), so a token is never in a process
 * list, a file on the box, or a log.
 */
import { DownloadError, STALL_MS, type BoxInstaller, type Transfer, type TransferProgress } from './installer.js';
import type { ResolvedPack } from './registry.js';
import type { Shell } from '../../model/shell.js';
import { redactUrl } from './tokens.js';

export interface ComfyLayout {
  comfyDir: string;
  /** The command that restarts ComfyUI; undefined when the box has none we know. */
  restart?: string;
}

/** Quotes one word for sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A value inside a curl config file's double quotes. */
function curlQuoted(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * Downloads $url (from curl's config on stdin) into $dir/.$name.vai-part, resuming it, then
 * checks $sum and renames it to $dir/$name. A background loop reports the part's size each
 * second, with the last Content-Length / Content-Range seen (its sleep holds no output open, so
 * the command ends the moment curl does). curl >= 7.83.1 is needed with a token: older ones could
 * pass an Authorization header on to a redirect's other host or port.
 */
const DOWNLOAD_SCRIPT = String.raw`set -u
dir=$1; name=$2; sum=$3; authed=$4
final="$dir/$name"; part="$(dirname "$final")/.$(basename "$final").vai-part"; hdr="$(dirname "$final")/.$(basename "$final").vai-headers"
command -v curl >/dev/null 2>&1 || { echo "vai-error the box has no curl; install it (apt-get install -y curl)" >&2; exit 90; }
if [ "$authed" = 1 ]; then
  v=$(curl --version | head -n1 | cut -d' ' -f2)
  old=$(printf '%s\n%s\n' "$v" 7.83.1 | sort -t. -k1,1n -k2,2n -k3,3n | head -n1)
  [ "$old" = 7.83.1 ] || { echo "vai-error curl $v on the box may pass a token on to a redirect's host; it needs 7.83.1 or newer" >&2; exit 91; }
fi
mkdir -p "$(dirname "$final")" || exit 92
[ -f "$final" ] && { echo "vai-present"; exit 0; }
echo "vai-start $(stat -c %s "$part" 2>/dev/null || echo 0)"
( while sleep 1 </dev/null >/dev/null 2>&1; do
    echo "vai-size $(stat -c %s "$part" 2>/dev/null || echo 0) $(grep -i '^content-\(range\|length\):' "$hdr" 2>/dev/null | tail -n1 | tr -d '\r' | tr ' ' '_')"
  done ) &
reporter=$!
curl --config - -fL -sS -C - --speed-limit 1 --speed-time ${Math.round(STALL_MS / 1000)} --connect-timeout 30 --retry 0 -o "$part" -D "$hdr"
rc=$?
kill $reporter 2>/dev/null
rm -f "$hdr"
[ $rc = 0 ] || exit $rc
if [ "$sum" != - ]; then
  got=$(sha256sum "$part" | cut -d' ' -f1)
  [ "$got" = "$sum" ] || { rm -f "$part"; echo "vai-error sha256 mismatch: expected $sum, got $got; the partial file was removed" >&2; exit 93; }
fi
mv -f "$part" "$final" && echo "vai-done $(stat -c %s "$final")"
`;

/**
 * Clones a pack into custom_nodes/$dir (via a temporary folder), checks out $ref, and installs
 * its requirements with ComfyUI's Python: the image's venv, one next to ComfyUI, else python3.
 */
const PACK_SCRIPT = String.raw`set -u
comfy=$1; dir=$2; url=$3; ref=$4; optional=$5
target="$comfy/custom_nodes/$dir"; tmp="$comfy/custom_nodes/.$dir.vai-part"
[ -d "$target" ] && { echo "vai-present"; exit 0; }
command -v git >/dev/null 2>&1 || { echo "vai-error the box has no git; install it (apt-get install -y git)" >&2; exit 90; }
mkdir -p "$comfy/custom_nodes" && rm -rf "$tmp" || exit 92
echo "vai-line cloning $url"
GIT_TERMINAL_PROMPT=0 git clone -q --recursive "$url" "$tmp" || { rm -rf "$tmp"; exit 94; }
if [ -n "$ref" ]; then
  if git -C "$tmp" checkout -q "$ref" 2>/dev/null || git -C "$tmp" checkout -q "v$ref" 2>/dev/null; then echo "vai-line checked out $ref"
  elif [ "$optional" = 1 ]; then echo "vai-line no ref $ref in the repository; kept its default branch"
  else rm -rf "$tmp"; echo "vai-error no ref $ref in $url" >&2; exit 95; fi
fi
mv "$tmp" "$target" || exit 92
if [ -f "$target/requirements.txt" ]; then
  py=python3
  for p in /venv/main/bin/python "$comfy/venv/bin/python" "$comfy/.venv/bin/python"; do [ -x "$p" ] && { py=$p; break; }; done
  echo "vai-line installing its requirements with $py"
  "$py" -m pip install -q -r "$target/requirements.txt" >&2 || { echo "vai-error pip could not install $target/requirements.txt" >&2; exit 96; }
fi
echo "vai-installed"
`;

/** The hidden partial file beside a file on the box (a name may carry a subfolder: `sd15/x.safetensors`). */
function partOf(final: string): string {
  const slash = final.lastIndexOf('/');
  return `${final.slice(0, slash)}/.${final.slice(slash + 1)}.vai-part`;
}

/** curl's exit codes that a resumed attempt can get past (connection cut, reset, empty answer). */
const RETRYABLE_CURL = new Set([7, 16, 18, 52, 55, 56, 92]);

function lastError(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const ours = lines.filter((l) => l.startsWith('vai-error ')).pop();
  return (ours ? ours.slice('vai-error '.length) : lines.pop()) ?? 'no output';
}

/** The total size from a header line: `Content-Range: bytes a-b/total`, or a length plus where it resumed. */
function totalOf(header: string, startedAt: number): number | null {
  const range = /content-range:_?bytes_?\d+-\d+\/(\d+)/i.exec(header);
  if (range) return Number(range[1]);
  const length = /content-length:_?(\d+)/i.exec(header);
  return length ? Number(length[1]) + startedAt : null;
}

export class ShellInstaller implements BoxInstaller {
  constructor(
    private readonly shell: Shell,
    private readonly layout: ComfyLayout,
  ) {}

  get comfyDir(): string {
    return this.layout.comfyDir;
  }

  async download(t: Transfer, onBytes: (p: TransferProgress) => void, signal: AbortSignal): Promise<void> {
    const dir = `${this.layout.comfyDir}/models/${t.dir}`;
    const args = [dir, t.name, t.sha256 ?? '-', t.token ? '1' : '0'].map(shQuote).join(' ');
    const config = [`url = ${curlQuoted(t.url)}`, ...(t.token ? [`header = ${curlQuoted(`Authorization: Bearer ${t.token.value}`)}`] : [])].join('\n') + '\n';
    let startedAt = 0;
    let total: number | null = null;
    const r = await this.shell(`sh -c ${shQuote(DOWNLOAD_SCRIPT)} vai-download ${args}`, {
      stdin: config,
      signal,
      onLine: (line) => {
        const [tag, a, header] = line.split(' ');
        if (tag === 'vai-start') startedAt = Number(a) || 0;
        else if (tag === 'vai-size') {
          total = header ? (totalOf(header, startedAt) ?? total) : total;
          onBytes({ done: Number(a) || 0, total });
        } else if (tag === 'vai-done') onBytes({ done: Number(a) || 0, total: Number(a) || total });
      },
    });
    if (signal.aborted) throw signal.reason;
    if (r.code === 0) return;
    const why = lastError(r.stderr);
    if (r.code === 33) {
      // The server will not resume: start the file again from its first byte.
      await this.shell(`rm -f ${shQuote(partOf(`${dir}/${t.name}`))}`, { signal });
      throw new DownloadError(`the server of ${t.name} does not resume downloads; starting again`, true);
    }
    if (r.code === 28) throw new DownloadError(`the download of ${t.name} stalled (no data for ${STALL_MS / 1000} s): ${why}`, false, true);
    throw new DownloadError(`downloading ${t.name} from ${redactUrl(t.url)} failed on the box: ${why}`, r.code === null || RETRYABLE_CURL.has(r.code));
  }

  async installPack(p: ResolvedPack, onLine: (line: string) => void, signal: AbortSignal): Promise<'installed' | 'present'> {
    const args = [this.layout.comfyDir, p.dir, p.gitUrl, p.ref ?? '', p.refOptional ? '1' : '0'].map(shQuote).join(' ');
    let present = false;
    const r = await this.shell(`sh -c ${shQuote(PACK_SCRIPT)} vai-pack ${args}`, {
      signal,
      onLine: (line) => {
        if (line === 'vai-present') present = true;
        else if (line.startsWith('vai-line ')) onLine(line.slice('vai-line '.length));
      },
    });
    if (signal.aborted) throw signal.reason;
    if (r.code !== 0) throw new Error(`installing node pack ${p.label} failed on the box: ${lastError(r.stderr)}`);
    return present ? 'present' : 'installed';
  }

  async restartComfy(signal: AbortSignal): Promise<void> {
    const cmd = this.layout.restart;
    if (!cmd) throw new Error('no way to restart ComfyUI on this box is known: set instance_config.comfy_restart');
    const r = await this.shell(`sh -c ${shQuote(cmd)}`, { signal });
    if (r.code !== 0) throw new Error(`restarting ComfyUI with \`${cmd}\` failed (exit ${r.code}): ${lastError(r.stderr)}`);
  }
}

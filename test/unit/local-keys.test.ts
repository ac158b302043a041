/**
 * The `local` provider's key pairs: ssh2's own generator writes a private key its parser rejects
 * about 4 times in 1000, which would leave a simulated box that never boots. Every key we write
 * must read back.
 */
import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../core/simulator/box.js';

describe('generateKeyPair', () => {
  it('gives 2000 key pairs in a row that ssh2 reads back, public half matching', () => {
    for (let i = 0; i < 2000; i++) {
      const pair = generateKeyPair(`local-${i} host key`);
      const key = ssh2.utils.parseKey(pair.private);
      expect(key).not.toBeInstanceOf(Error);
      const parsed = Array.isArray(key) ? key[0]! : (key as ssh2.ParsedKey);
      expect(pair.public.split(' ')[1]).toBe(parsed.getPublicSSH().toString('base64'));
    }
  });
});

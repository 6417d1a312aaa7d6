// A throwaway PKI made with the openssl command line: one CA, and certificates it issues for
// servers (127.0.0.1) and for clients (a DNS name in the SAN). Keys are EC P-256 in PKCS#8.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

function openssl(args) {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A CA in `dir`, and `issue(name, { dns, server })` for certificates it signs. Every file's
 * path and PEM text is returned.
 */
export function makePki(dir) {
  const ca = { key: join(dir, 'ca.key'), cert: join(dir, 'ca.pem') };
  openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', ca.key, '-out', ca.cert, '-subj', `/CN=portcullis e2e CA ${Date.now()}`,
    '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  ca.pem = readFileSync(ca.cert, 'utf8');

  function issue(name, { dns, server = false }) {
    const key = join(dir, `${name}.key`);
    const csr = join(dir, `${name}.csr`);
    const cert = join(dir, `${name}.pem`);
    const ext = join(dir, `${name}.ext`);
    const san = server ? 'IP:127.0.0.1,DNS:localhost' : `DNS:${dns}`;
    writeFileSync(
      ext,
      `subjectAltName=${san}\nextendedKeyUsage=${server ? 'serverAuth' : 'clientAuth'}\n`,
    );
    openssl([
      'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', csr, '-subj', `/CN=${name}`,
    ]);
    openssl([
      'x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial',
      '-out', cert, '-days', '1', '-extfile', ext,
    ]);
    return { key, cert, keyPem: readFileSync(key, 'utf8'), certPem: readFileSync(cert, 'utf8') };
  }

  return { ca, issue };
}

//! Bearer-token verification: a cold check (signature and claims) against a hit in the
//! verified-token cache, for RS256 and ES256.
//!
//! `cargo bench --bench bearer` (an in-process microbenchmark; `bench/run.sh` beside it
//! measures whole proxies side by side). The issuer is a static-key issuer so no network is involved;
//! the async verification is driven by a current-thread runtime (its `block_on` overhead is a
//! few hundred nanoseconds and is included in the cold numbers).

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis::app::App;
use portcullis::config::Config;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

const DEALER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dealer-rs512");

/// SubjectPublicKeyInfo prefix of an uncompressed P-256 point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn claims(iss: &str) -> serde_json::Value {
    let now = jsonwebtoken::get_current_timestamp();
    serde_json::json!({"iss": iss, "aud": "bench-api", "sub": "ci-runner", "exp": now + 3600,
        "iat": now, "scope": "reports:read test_api_access", "client_id": "ci-runner"})
}

fn app(dir: &std::path::Path, ec_pem: &str) -> (App, String, String) {
    portcullis::jwt::provider::install();
    let ec_path = dir.join("bench-es256.pub.pem");
    std::fs::write(&ec_path, ec_pem).unwrap();
    let toml = format!(
        r#"
[upstream]
url = "http://127.0.0.1:9"
[oidc]
issuer = "http://127.0.0.1:9"
client_id = "bench"
client_secret = "bench"
redirect_url = "http://127.0.0.1:4180/oauth2/callback"
[session]
secrets = ["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"]
[[bearer.issuers]]
issuer = "https://rsa.bench"
audiences = ["bench-api"]
public_keys = ["{DEALER}.pub.pem"]
[[bearer.issuers]]
issuer = "https://ec.bench"
audiences = ["bench-api"]
public_keys = ["{}"]
"#,
        ec_path.display()
    );
    let config = Config::parse(&toml, "bench.toml", &|_| None).unwrap();
    let app = App::new(Arc::new(config)).unwrap();
    (app, "https://rsa.bench".into(), "https://ec.bench".into())
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let ec_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&spki)
    );
    let (app, rsa_iss, ec_iss) = app(&dir, &ec_pem);
    let rsa_key =
        EncodingKey::from_rsa_pem(&std::fs::read(format!("{DEALER}.key.pem")).unwrap()).unwrap();
    let rs256 = encode(&Header::new(Algorithm::RS256), &claims(&rsa_iss), &rsa_key).unwrap();
    let es256 = encode(
        &Header::new(Algorithm::ES256),
        &claims(&ec_iss),
        &EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("bearer");
    for (name, token) in [("RS256", &rs256), ("ES256", &es256)] {
        group.bench_function(format!("{name} cold (full verification)"), |b| {
            b.iter(|| {
                rt.block_on(app.bearer.verify_uncached(black_box(token)))
                    .unwrap()
            })
        });
        // Make sure it is remembered, then measure the hit.
        rt.block_on(app.bearer.verify(token)).unwrap();
        group.bench_function(format!("{name} cached (verified-token cache hit)"), |b| {
            b.iter(|| app.bearer.remembered(black_box(token)).unwrap())
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);

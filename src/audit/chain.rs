//! Tamper evidence: the per-instance hash chain, signed checkpoints and
//! [`verify`].
//!
//! Every record half a store writes (request, response, event) gets one
//! [`ChainEntry`] in the same transaction: a sequence number per instance,
//! the SHA-256 of the record's canonical JSON ([`canonical_json`]), and the
//! previous entry's hash. Every `N` entries or `T` seconds the writer signs a
//! [`Checkpoint`] (Ed25519) over the newest entry. [`verify`] recomputes
//! everything and reports each modified, deleted, reordered or unchained
//! record. The format is documented in `docs/audit.md` ("Hash chain and
//! checkpoints").

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AuditError;

/// `prev_hash` of an instance's first entry: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical form that is hashed: JSON with object members sorted by
/// their names' UTF-16 code units (RFC 8785 order), no white space, strings
/// escaped as RFC 8785 does (only `"`, `\` and control characters, as
/// `\b \t \n \f \r` or lowercase `\u00xx`), numbers as `serde_json` writes
/// them (identical to RFC 8785 for integers, the only numbers records
/// carry outside token claims).
///
/// ```
/// let v = serde_json::json!({"b": 1, "a": [true, null, "x\n"]});
/// assert_eq!(skillgate::audit::canonical_json(&v), r#"{"a":[true,null,"x\n"],"b":1}"#);
/// ```
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Hash of a record half as stored: SHA-256 of its canonical JSON.
#[cfg(any(feature = "sqlite", feature = "postgres", test))]
pub(crate) fn record_hash(doc: &Value) -> String {
    sha256_hex(canonical_json(doc).as_bytes())
}

/// What kind of record a chain entry covers.
///
/// ```
/// use skillgate::audit::RecordKind;
/// assert_eq!(RecordKind::Response.as_str(), "response");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A [`RequestRecord`](super::RequestRecord).
    Request,
    /// A [`ResponseRecord`](super::ResponseRecord) (provisional or final).
    Response,
    /// An [`AuditEvent`](super::AuditEvent).
    Event,
}

impl RecordKind {
    /// `request`, `response` or `event`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Request => "request",
            RecordKind::Response => "response",
            RecordKind::Event => "event",
        }
    }
    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "request" => Some(RecordKind::Request),
            "response" => Some(RecordKind::Response),
            "event" => Some(RecordKind::Event),
            _ => None,
        }
    }
}

/// One link of an instance's chain.
///
/// `entry_hash` = SHA-256 (lowercase hex) of the canonical JSON of
/// `{"instance","kind","prev_hash","record_hash","record_id","record_time_us","seq"}`.
///
/// ```
/// use skillgate::audit::{ChainEntry, RecordKind, GENESIS_HASH};
/// let e = ChainEntry::link("gw-1", 1, RecordKind::Request, uuid::Uuid::nil(), 0, "ab".repeat(32), GENESIS_HASH);
/// assert_eq!(e.entry_hash, e.compute_hash());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// The writing instance's name.
    pub instance: String,
    /// 1, 2, 3… per instance, without gaps.
    pub seq: i64,
    /// Which kind of record.
    pub kind: RecordKind,
    /// The record's id (exchange id for requests and responses, event id for events).
    pub record_id: uuid::Uuid,
    /// The record's time in µs since the Unix epoch (request `received_at`
    /// for both halves of an exchange, event `time` for events): what
    /// retention compares with.
    pub record_time_us: i64,
    /// SHA-256 of the record's canonical JSON, hex.
    pub record_hash: String,
    /// The previous entry's `entry_hash` ([`GENESIS_HASH`] for seq 1).
    pub prev_hash: String,
    /// This entry's hash, hex.
    pub entry_hash: String,
}

impl ChainEntry {
    /// Builds the entry and computes its `entry_hash`.
    pub fn link(
        instance: &str,
        seq: i64,
        kind: RecordKind,
        record_id: uuid::Uuid,
        record_time_us: i64,
        record_hash: String,
        prev_hash: &str,
    ) -> Self {
        let mut e = ChainEntry {
            instance: instance.to_owned(),
            seq,
            kind,
            record_id,
            record_time_us,
            record_hash,
            prev_hash: prev_hash.to_owned(),
            entry_hash: String::new(),
        };
        e.entry_hash = e.compute_hash();
        e
    }

    /// Recomputes `entry_hash` from the other fields.
    pub fn compute_hash(&self) -> String {
        let v = serde_json::json!({
            "instance": self.instance,
            "seq": self.seq,
            "kind": self.kind.as_str(),
            "record_id": self.record_id.hyphenated().to_string(),
            "record_time_us": self.record_time_us,
            "record_hash": self.record_hash,
            "prev_hash": self.prev_hash,
        });
        sha256_hex(canonical_json(&v).as_bytes())
    }
}

/// A signed statement "instance's chain had `entry_hash` at `seq`".
///
/// The signed message is the canonical JSON of
/// `{"created_at_us","entry_hash","instance","purged_before_us","seq"}`
/// (`purged_before_us` is `null` except on the checkpoint a purge writes:
/// records older than it may be missing). `signature` is the Ed25519
/// signature (hex), `key_id` the first 16 hex digits of SHA-256 of the
/// 32-byte public key.
///
/// ```
/// use skillgate::audit::{Checkpoint, CheckpointSigner};
/// let signer = CheckpointSigner::from_bytes(&[7u8; 32]);
/// let cp = signer.sign("gw-1", 10, "ab".repeat(32), 1_700_000_000_000_000, None);
/// assert!(cp.verify(&signer.verifying_key()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The instance whose chain this covers.
    pub instance: String,
    /// The newest entry covered.
    pub seq: i64,
    /// That entry's `entry_hash`.
    pub entry_hash: String,
    /// When signed, µs since the Unix epoch.
    pub created_at_us: i64,
    /// Set by a purge: records with `record_time_us` before this were deleted on purpose.
    pub purged_before_us: Option<i64>,
    /// Which key signed (first 16 hex digits of SHA-256 of the public key).
    pub key_id: String,
    /// Ed25519 signature over [`message`](Self::message), hex.
    pub signature: String,
}

impl Checkpoint {
    /// The signed bytes.
    pub fn message(&self) -> String {
        canonical_json(&serde_json::json!({
            "instance": self.instance,
            "seq": self.seq,
            "entry_hash": self.entry_hash,
            "created_at_us": self.created_at_us,
            "purged_before_us": self.purged_before_us,
        }))
    }

    /// Whether `key` signed this checkpoint.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Some(bytes) = from_hex(&self.signature) else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(self.message().as_bytes(), &sig).is_ok()
    }
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn key_id(key: &VerifyingKey) -> String {
    sha256_hex(key.as_bytes())[..16].to_owned()
}

/// The Ed25519 key that signs checkpoints.
///
/// ```
/// let signer = skillgate::audit::CheckpointSigner::from_bytes(&[1u8; 32]);
/// assert_eq!(signer.key_id().len(), 16);
/// ```
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// From a 32-byte Ed25519 seed.
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        CheckpointSigner {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Reads a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`).
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] naming the file if it cannot be read or parsed
    /// (the key material is never part of the message).
    pub fn from_pkcs8_pem_file(path: &Path) -> Result<Self, AuditError> {
        let pem = std::fs::read_to_string(path)
            .map_err(|e| AuditError::Unavailable(format!("signing key {}: {e}", path.display())))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| {
            AuditError::Unavailable(format!(
                "signing key {}: not a PKCS#8 Ed25519 private key",
                path.display()
            ))
        })?;
        Ok(CheckpointSigner { key })
    }

    /// The public key verifiers need.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// First 16 hex digits of SHA-256 of the public key.
    pub fn key_id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    /// Signs a checkpoint over `entry_hash` at `seq`.
    pub fn sign(
        &self,
        instance: &str,
        seq: i64,
        entry_hash: String,
        created_at_us: i64,
        purged_before_us: Option<i64>,
    ) -> Checkpoint {
        let mut cp = Checkpoint {
            instance: instance.to_owned(),
            seq,
            entry_hash,
            created_at_us,
            purged_before_us,
            key_id: self.key_id(),
            signature: String::new(),
        };
        let sig = self.key.sign(cp.message().as_bytes());
        cp.signature = sig.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        cp
    }
}

/// Reads a verifier's public key: SPKI PEM (`openssl pkey -pubout`).
///
/// # Errors
/// [`AuditError::Unavailable`] naming the file.
///
/// ```no_run
/// let key = skillgate::audit::read_public_key(std::path::Path::new("audit-signing.pub.pem")).unwrap();
/// # let _ = key;
/// ```
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| AuditError::Unavailable(format!("public key {}: {e}", path.display())))?;
    VerifyingKey::from_public_key_pem(&pem).map_err(|_| {
        AuditError::Unavailable(format!(
            "public key {}: not an SPKI Ed25519 public key",
            path.display()
        ))
    })
}

/// One record half as a store holds it, for verification.
///
/// ```
/// use skillgate::audit::{RecordKind, StoredRecord};
/// let r = StoredRecord { kind: RecordKind::Event, id: uuid::Uuid::nil(), hash: "00".repeat(32), columns_agree: true };
/// assert!(r.columns_agree);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Which half.
    pub kind: RecordKind,
    /// Its id.
    pub id: uuid::Uuid,
    /// SHA-256 of its canonical JSON as stored now, hex.
    pub hash: String,
    /// Whether the store's indexed columns still say what the record says
    /// (`false`: a column was edited behind the record's back).
    pub columns_agree: bool,
}

/// Everything [`verify`] reads from a store.
#[derive(Debug, Clone, Default)]
pub struct ChainSnapshot {
    /// All chain entries of all instances.
    pub entries: Vec<ChainEntry>,
    /// All checkpoints of all instances.
    pub checkpoints: Vec<Checkpoint>,
    /// Every stored record half.
    pub records: Vec<StoredRecord>,
}

/// A store whose records carry a hash chain.
///
/// ```
/// fn takes(_: &dyn skillgate::audit::ChainSource) {}
/// ```
#[async_trait]
pub trait ChainSource: Send + Sync {
    /// Reads entries, checkpoints and the hashes of the stored records.
    async fn chain_snapshot(&self) -> Result<ChainSnapshot, AuditError>;
}

/// One thing verification found wrong.
///
/// ```
/// use skillgate::audit::Problem;
/// let p = Problem::Deleted { instance: "gw".into(), seq: 3, kind: skillgate::audit::RecordKind::Request, record_id: uuid::Uuid::nil() };
/// assert!(p.to_string().contains("deleted"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The record's content no longer hashes to its chain entry's `record_hash`
    /// (or its indexed columns disagree with its content).
    Modified {
        /// Instance of the chain entry.
        instance: String,
        /// Sequence number of the entry.
        seq: i64,
        /// Which half.
        kind: RecordKind,
        /// Record id.
        record_id: uuid::Uuid,
    },
    /// A chained record is missing (and no signed purge covers it).
    Deleted {
        /// Instance of the chain entry.
        instance: String,
        /// Sequence number of the entry.
        seq: i64,
        /// Which half.
        kind: RecordKind,
        /// Record id.
        record_id: uuid::Uuid,
    },
    /// Entries are out of order, missing, or altered: `seq` does not link to
    /// its predecessor, or its own hash does not match.
    BrokenLink {
        /// Instance.
        instance: String,
        /// First sequence number where the chain breaks.
        seq: i64,
        /// What is wrong, in words.
        detail: String,
    },
    /// A record with no chain entry (inserted behind the gateway's back, or
    /// moved to another id).
    Unchained {
        /// Which half.
        kind: RecordKind,
        /// Record id.
        record_id: uuid::Uuid,
    },
    /// A checkpoint whose signature fails, or which disagrees with the chain.
    BadCheckpoint {
        /// Instance.
        instance: String,
        /// Its sequence number.
        seq: i64,
        /// What is wrong.
        detail: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Modified {
                instance,
                seq,
                kind,
                record_id,
            } => write!(
                f,
                "modified: {} {record_id} ({instance} #{seq})",
                kind.as_str()
            ),
            Problem::Deleted {
                instance,
                seq,
                kind,
                record_id,
            } => write!(
                f,
                "deleted: {} {record_id} ({instance} #{seq})",
                kind.as_str()
            ),
            Problem::BrokenLink {
                instance,
                seq,
                detail,
            } => write!(
                f,
                "reordered or removed chain entries: {instance} #{seq}: {detail}"
            ),
            Problem::Unchained { kind, record_id } => {
                write!(
                    f,
                    "unchained: {} {record_id} has no chain entry",
                    kind.as_str()
                )
            }
            Problem::BadCheckpoint {
                instance,
                seq,
                detail,
            } => write!(f, "bad checkpoint: {instance} #{seq}: {detail}"),
        }
    }
}

/// Per-instance summary of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceSummary {
    /// Instance name.
    pub instance: String,
    /// Entries checked.
    pub entries: usize,
    /// Lowest and highest retained sequence numbers.
    pub first_seq: Option<i64>,
    /// Highest retained sequence number.
    pub last_seq: Option<i64>,
    /// Checkpoints whose signature verified.
    pub valid_checkpoints: usize,
    /// Newest verified checkpoint's sequence number (entries after it are
    /// linked but not yet signed).
    pub last_checkpoint_seq: Option<i64>,
}

/// What [`verify`] found.
///
/// ```
/// let r = skillgate::audit::VerifyReport::default();
/// assert!(r.is_ok());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// One per instance chain.
    pub instances: Vec<InstanceSummary>,
    /// Record halves whose hashes matched.
    pub records_verified: usize,
    /// Record halves missing on purpose (covered by a signed purge checkpoint).
    pub records_purged: usize,
    /// Everything wrong, in chain order per instance.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// No problems found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies every chain in `source` with the checkpoint public key `key`.
///
/// For each instance: entries must run without gaps from an anchor (seq 1
/// with [`GENESIS_HASH`], or a verified checkpoint right before the first
/// retained entry), each linking to its predecessor's hash; every checkpoint
/// must carry a valid signature and match the entry at its seq; a signed
/// checkpoint newer than the last entry means entries were cut off the end.
/// For each chained record (the newest entry per kind and id): the stored
/// record must hash to the entry's `record_hash`, unless a verified purge
/// checkpoint covers its time. Records without an entry are reported.
///
/// # Errors
/// The store's [`AuditError`] if it cannot be read.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use skillgate::audit::{ChainSnapshot, ChainSource, CheckpointSigner, verify};
/// struct Empty;
/// #[async_trait::async_trait]
/// impl ChainSource for Empty {
///     async fn chain_snapshot(&self) -> Result<ChainSnapshot, skillgate::audit::AuditError> {
///         Ok(ChainSnapshot::default())
///     }
/// }
/// let key = CheckpointSigner::from_bytes(&[1; 32]).verifying_key();
/// assert!(verify(&Empty, &key).await.unwrap().is_ok());
/// # });
/// ```
pub async fn verify(
    source: &dyn ChainSource,
    key: &VerifyingKey,
) -> Result<VerifyReport, AuditError> {
    Ok(verify_snapshot(source.chain_snapshot().await?, key))
}

/// [`verify`] over an already read snapshot.
pub fn verify_snapshot(snapshot: ChainSnapshot, key: &VerifyingKey) -> VerifyReport {
    let ChainSnapshot {
        mut entries,
        checkpoints,
        records,
    } = snapshot;
    let mut report = VerifyReport::default();
    entries.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.seq.cmp(&b.seq)));

    let mut by_instance: HashMap<&str, Vec<&Checkpoint>> = HashMap::new();
    for cp in &checkpoints {
        by_instance
            .entry(cp.instance.as_str())
            .or_default()
            .push(cp);
    }
    let mut instances: Vec<&str> = entries.iter().map(|e| e.instance.as_str()).collect();
    instances.extend(checkpoints.iter().map(|c| c.instance.as_str()));
    instances.sort_unstable();
    instances.dedup();

    let stored: HashMap<(RecordKind, uuid::Uuid), &StoredRecord> =
        records.iter().map(|r| ((r.kind, r.id), r)).collect();
    // The newest entry per (kind, id) is the one the record must match.
    let mut newest: HashMap<(RecordKind, uuid::Uuid), &ChainEntry> = HashMap::new();
    for e in &entries {
        newest.insert((e.kind, e.record_id), e);
    }
    let mut purged_before: HashMap<&str, i64> = HashMap::new();

    for inst in instances {
        let chain: Vec<&ChainEntry> = entries.iter().filter(|e| e.instance == inst).collect();
        let mut cps: Vec<&Checkpoint> = by_instance.get(inst).cloned().unwrap_or_default();
        cps.sort_by_key(|c| c.seq);
        let mut valid: Vec<&Checkpoint> = Vec::new();
        for cp in &cps {
            if cp.verify(key) {
                valid.push(cp);
            } else {
                report.problems.push(Problem::BadCheckpoint {
                    instance: inst.to_owned(),
                    seq: cp.seq,
                    detail: "signature does not verify with the given public key".into(),
                });
            }
        }
        if let Some(p) = valid.iter().filter_map(|c| c.purged_before_us).max() {
            purged_before.insert(inst, p);
        }
        // Anchor: genesis, or a verified checkpoint right before the first entry.
        let mut prev: Option<(i64, String)> = match chain.first() {
            Some(first) if first.seq == 1 => Some((0, GENESIS_HASH.to_owned())),
            Some(first) => valid
                .iter()
                .find(|c| c.seq == first.seq - 1)
                .map(|c| (c.seq, c.entry_hash.clone())),
            None => None,
        };
        if prev.is_none()
            && let Some(first) = chain.first()
        {
            report.problems.push(Problem::BrokenLink {
                instance: inst.to_owned(),
                seq: first.seq,
                detail:
                    "the chain does not start at 1 and no signed checkpoint anchors its first entry"
                        .into(),
            });
        }
        let mut at_seq: HashMap<i64, &str> = HashMap::new();
        for e in &chain {
            if e.compute_hash() != e.entry_hash {
                report.problems.push(Problem::BrokenLink {
                    instance: inst.to_owned(),
                    seq: e.seq,
                    detail: "entry hash does not match the entry".into(),
                });
            }
            if let Some((pseq, phash)) = &prev {
                if e.seq != pseq + 1 {
                    report.problems.push(Problem::BrokenLink {
                        instance: inst.to_owned(),
                        seq: e.seq,
                        detail: format!("entries {}..{} are missing", pseq + 1, e.seq - 1),
                    });
                } else if &e.prev_hash != phash {
                    report.problems.push(Problem::BrokenLink {
                        instance: inst.to_owned(),
                        seq: e.seq,
                        detail: "does not link to the previous entry".into(),
                    });
                }
            }
            prev = Some((e.seq, e.entry_hash.clone()));
            at_seq.insert(e.seq, &e.entry_hash);
        }
        let first_seq = chain.first().map(|e| e.seq);
        let last_seq = chain.last().map(|e| e.seq);
        for cp in &valid {
            match at_seq.get(&cp.seq) {
                Some(h) if *h != cp.entry_hash => report.problems.push(Problem::BadCheckpoint {
                    instance: inst.to_owned(),
                    seq: cp.seq,
                    detail: "the entry at this seq has a different hash".into(),
                }),
                None if last_seq.is_none_or(|l| cp.seq > l) && cp.purged_before_us.is_none() => {
                    report.problems.push(Problem::BrokenLink {
                        instance: inst.to_owned(),
                        seq: cp.seq,
                        detail: format!(
                            "a signed checkpoint covers seq {} but the chain ends at {}",
                            cp.seq,
                            last_seq.unwrap_or(0)
                        ),
                    })
                }
                _ => {}
            }
        }
        report.instances.push(InstanceSummary {
            instance: inst.to_owned(),
            entries: chain.len(),
            first_seq,
            last_seq,
            valid_checkpoints: valid.len(),
            last_checkpoint_seq: valid.last().map(|c| c.seq),
        });
    }

    // Records against their newest entries, in chain order.
    let mut newest_sorted: Vec<&ChainEntry> = newest.values().copied().collect();
    newest_sorted.sort_by(|a, b| a.instance.cmp(&b.instance).then(a.seq.cmp(&b.seq)));
    for e in newest_sorted {
        match stored.get(&(e.kind, e.record_id)) {
            Some(r) if r.hash == e.record_hash && r.columns_agree => report.records_verified += 1,
            Some(_) => report.problems.push(Problem::Modified {
                instance: e.instance.clone(),
                seq: e.seq,
                kind: e.kind,
                record_id: e.record_id,
            }),
            None if purged_before
                .get(e.instance.as_str())
                .is_some_and(|p| e.record_time_us < *p) =>
            {
                report.records_purged += 1
            }
            None => report.problems.push(Problem::Deleted {
                instance: e.instance.clone(),
                seq: e.seq,
                kind: e.kind,
                record_id: e.record_id,
            }),
        }
    }
    let mut unchained: Vec<&StoredRecord> = records
        .iter()
        .filter(|r| !newest.contains_key(&(r.kind, r.id)))
        .collect();
    unchained.sort_by_key(|r| (r.id, r.kind.as_str()));
    for r in unchained {
        report.problems.push(Problem::Unchained {
            kind: r.kind,
            record_id: r.id,
        });
    }
    report
}

/// The writer side of one instance's chain: the last entry written.
#[derive(Debug, Clone)]
#[cfg(any(feature = "sqlite", feature = "postgres", test))]
pub(crate) struct ChainHead {
    pub instance: String,
    pub seq: i64,
    pub hash: String,
}

#[cfg(any(feature = "sqlite", feature = "postgres", test))]
impl ChainHead {
    pub(crate) fn genesis(instance: &str) -> Self {
        ChainHead {
            instance: instance.to_owned(),
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    /// Appends an entry (the caller keeps the old head if the write fails).
    pub(crate) fn append(
        &mut self,
        kind: RecordKind,
        id: uuid::Uuid,
        time_us: i64,
        hash: String,
    ) -> ChainEntry {
        let e = ChainEntry::link(
            &self.instance,
            self.seq + 1,
            kind,
            id,
            time_us,
            hash,
            &self.hash,
        );
        self.seq = e.seq;
        self.hash = e.entry_hash.clone();
        e
    }
}

/// Row mapping shared by the SQL stores' `chain_snapshot` (the same columns
/// in SQLite and PostgreSQL; `record_id` read as text). A column that
/// cannot be read becomes its default, which verification then reports.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod rows {
    use sqlx::{ColumnIndex, Decode, Row, Type};
    use uuid::Uuid;

    use super::{ChainEntry, Checkpoint, RecordKind};

    /// A row of `audit_chain`.
    pub(crate) fn chain_entry<'r, R>(r: &'r R) -> ChainEntry
    where
        R: Row,
        &'r str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let kind: String = r.try_get("kind").unwrap_or_default();
        let rid: String = r.try_get("record_id").unwrap_or_default();
        ChainEntry {
            instance: r.try_get("instance").unwrap_or_default(),
            seq: r.try_get("seq").unwrap_or_default(),
            // An edited kind still fails its entry hash; keep it visible as an event.
            kind: RecordKind::parse(&kind).unwrap_or(RecordKind::Event),
            record_id: Uuid::parse_str(&rid).unwrap_or_default(),
            record_time_us: r.try_get("record_time_us").unwrap_or_default(),
            record_hash: r.try_get("record_hash").unwrap_or_default(),
            prev_hash: r.try_get("prev_hash").unwrap_or_default(),
            entry_hash: r.try_get("entry_hash").unwrap_or_default(),
        }
    }

    /// A row of `audit_checkpoint`.
    pub(crate) fn checkpoint<'r, R>(r: &'r R) -> Checkpoint
    where
        R: Row,
        &'r str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        Checkpoint {
            instance: r.try_get("instance").unwrap_or_default(),
            seq: r.try_get("seq").unwrap_or_default(),
            entry_hash: r.try_get("entry_hash").unwrap_or_default(),
            created_at_us: r.try_get("created_at_us").unwrap_or_default(),
            purged_before_us: r.try_get("purged_before_us").unwrap_or_default(),
            key_id: r.try_get("key_id").unwrap_or_default(),
            signature: r.try_get("signature").unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainEntry> {
        let mut head = ChainHead::genesis("gw");
        (0..n)
            .map(|i| {
                head.append(
                    RecordKind::Event,
                    uuid::Uuid::from_u128(i as u128 + 1),
                    i,
                    sha256_hex(&i.to_le_bytes()),
                )
            })
            .collect()
    }

    fn records(entries: &[ChainEntry]) -> Vec<StoredRecord> {
        entries
            .iter()
            .map(|e| StoredRecord {
                kind: e.kind,
                id: e.record_id,
                hash: e.record_hash.clone(),
                columns_agree: true,
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies_and_tampering_is_named() {
        let signer = CheckpointSigner::from_bytes(&[3; 32]);
        let entries = chain(5);
        let cp = signer.sign("gw", 5, entries[4].entry_hash.clone(), 1, None);
        let snap = ChainSnapshot {
            records: records(&entries),
            entries: entries.clone(),
            checkpoints: vec![cp.clone()],
        };
        let ok = verify_snapshot(snap.clone(), &signer.verifying_key());
        assert!(ok.is_ok(), "{:?}", ok.problems);
        assert_eq!(ok.records_verified, 5);

        // Swap two entries' positions: broken links.
        let mut swapped = snap.clone();
        swapped.entries[1].seq = 3;
        swapped.entries[2].seq = 2;
        let r = verify_snapshot(swapped, &signer.verifying_key());
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, Problem::BrokenLink { .. }))
        );

        // Truncated tail: the signed checkpoint names a seq past the end.
        let mut cut = snap.clone();
        cut.entries.truncate(3);
        cut.records.truncate(3);
        let r = verify_snapshot(cut, &signer.verifying_key());
        assert!(!r.is_ok());

        // A different key fails the checkpoint.
        let other = CheckpointSigner::from_bytes(&[4; 32]);
        let r = verify_snapshot(snap, &other.verifying_key());
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, Problem::BadCheckpoint { .. }))
        );
    }

    #[test]
    fn canonical_json_sorts_by_utf16_and_is_stable() {
        let v: Value =
            serde_json::from_str(r#"{"\u00e9":1,"z":2,"a":{"y":[1,2],"b":"\u0001"}}"#).unwrap();
        let c = canonical_json(&v);
        assert_eq!(c, "{\"a\":{\"b\":\"\\u0001\",\"y\":[1,2]},\"z\":2,\"é\":1}");
        let again: Value = serde_json::from_str(&c).unwrap();
        assert_eq!(canonical_json(&again), c);
    }
}

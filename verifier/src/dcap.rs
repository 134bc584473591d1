//! DCAP verification with `dcap-qvl`: quote signature → QE report → PCK chain → Intel root (+ CRLs),
//! TCB level under a [`TcbPolicy`], with the collateral and the time as inputs.

use core::time::Duration;

use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::{Policy, QuoteClaims, QuoteCollateralV3, QuotePolicy, TcbStatus};
use serde::{Deserialize, Serialize};

/// Why DCAP verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcapError {
    /// The collateral file is not dcap-qvl's collateral JSON.
    #[error("collateral is not valid collateral JSON: {0}")]
    Collateral(String),
    /// Cryptographic verification failed (signatures, chain, CRLs, expiry, TCB matching, TD attributes).
    #[error("DCAP verification failed: {0}")]
    Verification(String),
    /// The quote verified, but the policy rejects it.
    #[error("TCB policy rejects the quote (status {status}): {reason}")]
    Policy {
        /// The TCB status dcap-qvl reported.
        status: String,
        /// The policy's reason.
        reason: String,
    },
}

/// Which TCB levels and platform properties are acceptable.
///
/// Default: `UpToDate` and `SWHardeningNeeded` accepted; `OutOfDate` only when
/// [`allow_out_of_date`](Self::allow_out_of_date); dynamic platform, cached keys and SMT allowed
/// (cloud TDX hosts have all three). Debug and migratable TDs are always rejected (by dcap-qvl and
/// again by the independent reading).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcbPolicy {
    /// TCB statuses accepted besides the OutOfDate ones.
    pub accepted_statuses: Vec<TcbStatus>,
    /// Accept `OutOfDate` and `OutOfDateConfigurationNeeded`.
    pub allow_out_of_date: bool,
    /// With `allow_out_of_date`: how long after the platform TCB level's date it stays acceptable
    /// (`None`: forever).
    pub out_of_date_grace_secs: Option<u64>,
    /// Accept PCK certificates with the dynamic-platform flag.
    pub allow_dynamic_platform: bool,
    /// Accept PCK certificates with the cached-keys flag.
    pub allow_cached_keys: bool,
    /// Accept platforms with SMT enabled.
    pub allow_smt: bool,
    /// Advisory ids that reject a quote whatever its status.
    pub rejected_advisories: Vec<String>,
}

impl Default for TcbPolicy {
    fn default() -> Self {
        Self {
            accepted_statuses: vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded],
            allow_out_of_date: false,
            out_of_date_grace_secs: None,
            allow_dynamic_platform: true,
            allow_cached_keys: true,
            allow_smt: true,
            rejected_advisories: Vec::new(),
        }
    }
}

impl TcbPolicy {
    /// The equivalent `dcap-qvl` policy at time `now`.
    pub fn to_dcap(&self, now: u64) -> QuotePolicy {
        let mut p = QuotePolicy::strict(now);
        for s in &self.accepted_statuses {
            p = p.allow_status(*s);
        }
        if self.allow_out_of_date {
            p = p
                .allow_status(TcbStatus::OutOfDate)
                .allow_status(TcbStatus::OutOfDateConfigurationNeeded)
                .platform_grace_period(Duration::from_secs(
                    self.out_of_date_grace_secs.unwrap_or(u64::MAX),
                ))
                .qe_grace_period(Duration::from_secs(
                    self.out_of_date_grace_secs.unwrap_or(u64::MAX),
                ));
        }
        p.allow_dynamic_platform(self.allow_dynamic_platform)
            .allow_cached_keys(self.allow_cached_keys)
            .allow_smt(self.allow_smt)
            .reject_advisories(&self.rejected_advisories)
    }
}

/// Parse collateral JSON (the format of dcap-qvl's `sample/*_collateral.json` and its PCCS client).
pub fn parse_collateral(json: &[u8]) -> Result<QuoteCollateralV3, DcapError> {
    serde_json::from_slice(json).map_err(|e| DcapError::Collateral(e.to_string()))
}

/// What dcap-qvl established about a quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DcapOutcome {
    /// Converged TCB status.
    pub status: TcbStatus,
    /// Advisory ids.
    pub advisory_ids: Vec<String>,
    /// FMSPC (hex) from the verified PCK certificate.
    pub fmspc: String,
    /// Earliest expiry across the collateral (unix seconds).
    pub collateral_expires: u64,
    /// All claims, for the cross-check with the independent reading.
    #[serde(skip)]
    pub claims: QuoteClaims,
}

/// Verify `quote` with `collateral` at unix time `now` under `policy`.
///
/// `root_ca_der`: the trust anchor; `None` is Intel's production SGX root CA.
/// Returns the outcome, or the dcap-qvl error; a policy rejection still carries the status.
pub fn verify_dcap(
    quote: &[u8],
    collateral: &QuoteCollateralV3,
    now: u64,
    policy: &TcbPolicy,
    root_ca_der: Option<&[u8]>,
) -> Result<DcapOutcome, DcapError> {
    let verifier = match root_ca_der {
        Some(root) => QuoteVerifier::new(root.to_vec()),
        None => QuoteVerifier::new_prod(),
    };
    // First the cryptographic verification (claims only), then our policy, so that a rejected
    // quote still reports its status.
    let claims = verifier
        .verify_with_policy(quote, collateral, now, &QuotePolicy::claims_only(now))
        .map_err(|e| DcapError::Verification(format!("{e:#}")))?;
    let status = claims.tcb.status;
    let out_of_date = matches!(
        status,
        TcbStatus::OutOfDate | TcbStatus::OutOfDateConfigurationNeeded
    );
    let accepted =
        policy.accepted_statuses.contains(&status) || (out_of_date && policy.allow_out_of_date);
    if !accepted {
        return Err(DcapError::Policy {
            status: status.to_string(),
            reason: format!(
                "status {status} is not among the accepted statuses [{}]{}",
                policy
                    .accepted_statuses
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                if out_of_date {
                    " (OutOfDate needs allow_out_of_date)"
                } else {
                    ""
                }
            ),
        });
    }
    policy
        .to_dcap(now)
        .validate(&claims)
        .map_err(|e| DcapError::Policy {
            status: claims.tcb.status.to_string(),
            reason: format!("{e:#}"),
        })?;
    Ok(DcapOutcome {
        status: claims.tcb.status,
        advisory_ids: claims.tcb.advisory_ids.clone(),
        fmspc: hex::encode(claims.platform.pck.fmspc),
        collateral_expires: claims.earliest_expiration_date,
        claims,
    })
}

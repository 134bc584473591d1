//! Differential check: the independent reading ([`crate::quote`], [`crate::pck`]) against the claims
//! of `dcap-qvl`. Any disagreement is an error naming the field.

use dcap_qvl::quote::Report;
use dcap_qvl::{PckCertFlag, QuoteClaims};

use crate::pck::PckInfo;
use crate::quote::{Body, EnclaveReport, ParsedQuote, TdReport};

/// A field on which the two readings disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("independent reading disagrees with dcap-qvl on {field}: ours {ours}, dcap-qvl {theirs}")]
pub struct Mismatch {
    /// The field.
    pub field: String,
    /// Our value.
    pub ours: String,
    /// dcap-qvl's value.
    pub theirs: String,
}

struct Cmp {
    compared: usize,
    first: Option<Mismatch>,
}

impl Cmp {
    fn eq<T: PartialEq + core::fmt::Debug>(&mut self, field: &str, ours: T, theirs: T) {
        self.compared = self.compared.saturating_add(1);
        if ours != theirs && self.first.is_none() {
            self.first = Some(Mismatch {
                field: field.to_string(),
                ours: show(&ours),
                theirs: show(&theirs),
            });
        }
    }
}

fn show<T: core::fmt::Debug>(v: &T) -> String {
    let s = format!("{v:?}");
    // Byte arrays print as lists of numbers; keep the message readable.
    if s.len() > 80 {
        let mut t: String = s.chars().take(77).collect();
        t.push_str("...");
        t
    } else {
        s
    }
}

fn flag(f: PckCertFlag) -> Option<bool> {
    match f {
        PckCertFlag::True => Some(true),
        PckCertFlag::False => Some(false),
        PckCertFlag::Undefined => None,
    }
}

/// Compare every field both readings have; returns how many were compared.
pub fn cross_check(
    ours: &ParsedQuote,
    pck: &PckInfo,
    claims: &QuoteClaims,
) -> Result<usize, Mismatch> {
    let mut c = Cmp {
        compared: 0,
        first: None,
    };
    let h = &claims.header;
    c.eq("header.version", ours.header.version, h.version);
    c.eq(
        "header.attestation_key_type",
        ours.header.attestation_key_type,
        h.attestation_key_type,
    );
    c.eq("header.tee_type", ours.header.tee_type, h.tee_type);
    c.eq("header.qe_svn", ours.header.qe_svn, h.qe_svn);
    c.eq("header.pce_svn", ours.header.pce_svn, h.pce_svn);
    c.eq(
        "header.qe_vendor_id",
        ours.header.qe_vendor_id,
        h.qe_vendor_id,
    );
    c.eq("header.user_data", ours.header.user_data, h.user_data);

    match (&ours.body, &claims.report) {
        (Body::Sgx(a), Report::SgxEnclave(b)) => enclave(&mut c, "body", a, b),
        (Body::Td10(a), Report::TD10(b)) => td10(&mut c, a, b),
        (Body::Td15(a), Report::TD15(b)) => {
            td10(&mut c, a, &b.base);
            c.eq("body.tee_tcb_svn2", a.tee_tcb_svn2, Some(b.tee_tcb_svn2));
            c.eq("body.mr_service_td", a.mr_service_td, Some(b.mr_service_td));
        }
        (Body::Td15Ex(a), Report::TD15Ex(b)) => {
            td10(&mut c, a, &b.base.base);
            c.eq(
                "body.tee_tcb_svn2",
                a.tee_tcb_svn2,
                Some(b.base.tee_tcb_svn2),
            );
            c.eq(
                "body.mr_service_td",
                a.mr_service_td,
                Some(b.base.mr_service_td),
            );
        }
        (a, b) => c.eq("body.shape", a.shape(), report_shape(b)),
    }
    enclave(&mut c, "qe_report", &ours.qe_report, &claims.qe.report);

    let p = &claims.platform.pck;
    c.eq("pck.fmspc", pck.fmspc.clone(), hex::encode(p.fmspc));
    c.eq("pck.pce_svn", pck.pce_svn, p.pce_svn);
    c.eq("pck.cpu_svn", pck.cpu_svn.clone(), hex::encode(p.cpu_svn));
    c.eq("pck.pce_id", pck.pce_id.clone(), hex::encode(&p.pce_id));
    c.eq(
        "pck.ppid",
        pck.ppid.clone().unwrap_or_default(),
        hex::encode(&p.ppid),
    );
    c.eq("pck.sgx_type", pck.sgx_type, Some(p.sgx_type));
    c.eq(
        "pck.dynamic_platform",
        pck.dynamic_platform,
        flag(p.dynamic_platform),
    );
    c.eq("pck.cached_keys", pck.cached_keys, flag(p.cached_keys));
    c.eq("pck.smt_enabled", pck.smt_enabled, flag(p.smt_enabled));

    match c.first {
        Some(m) => Err(m),
        None => Ok(c.compared),
    }
}

fn report_shape(r: &Report) -> &'static str {
    match r {
        Report::SgxEnclave(_) => "SGX enclave report",
        Report::TD10(_) => "TD1.0",
        Report::TD15(_) => "TD1.5",
        Report::TD15Ex(_) => "TD1.5-ex",
    }
}

fn enclave(c: &mut Cmp, prefix: &str, a: &EnclaveReport, b: &dcap_qvl::quote::EnclaveReport) {
    c.eq(&format!("{prefix}.cpu_svn"), a.cpu_svn, b.cpu_svn);
    c.eq(
        &format!("{prefix}.misc_select"),
        a.misc_select,
        b.misc_select,
    );
    c.eq(&format!("{prefix}.attributes"), a.attributes, b.attributes);
    c.eq(&format!("{prefix}.mr_enclave"), a.mr_enclave, b.mr_enclave);
    c.eq(&format!("{prefix}.mr_signer"), a.mr_signer, b.mr_signer);
    c.eq(
        &format!("{prefix}.isv_prod_id"),
        a.isv_prod_id,
        b.isv_prod_id,
    );
    c.eq(&format!("{prefix}.isv_svn"), a.isv_svn, b.isv_svn);
    c.eq(
        &format!("{prefix}.report_data"),
        a.report_data,
        b.report_data,
    );
}

fn td10(c: &mut Cmp, a: &TdReport, b: &dcap_qvl::quote::TDReport10) {
    c.eq("body.tee_tcb_svn", a.tee_tcb_svn, b.tee_tcb_svn);
    c.eq("body.mr_seam", a.mr_seam, b.mr_seam);
    c.eq("body.mr_signer_seam", a.mr_signer_seam, b.mr_signer_seam);
    c.eq("body.seam_attributes", a.seam_attributes, b.seam_attributes);
    c.eq("body.td_attributes", a.td_attributes, b.td_attributes);
    c.eq("body.xfam", a.xfam, b.xfam);
    c.eq("body.mr_td", a.mr_td, b.mr_td);
    c.eq("body.mr_config_id", a.mr_config_id, b.mr_config_id);
    c.eq("body.mr_owner", a.mr_owner, b.mr_owner);
    c.eq("body.mr_owner_config", a.mr_owner_config, b.mr_owner_config);
    let [r0, r1, r2, r3] = &a.rtmr;
    c.eq("body.rtmr0", r0, &b.rt_mr0);
    c.eq("body.rtmr1", r1, &b.rt_mr1);
    c.eq("body.rtmr2", r2, &b.rt_mr2);
    c.eq("body.rtmr3", r3, &b.rt_mr3);
    c.eq("body.report_data", a.report_data, b.report_data);
}

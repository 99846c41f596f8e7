//! Synthetic chest radiographs as DICOM, with ground truth. Not clinical data.
//!
//! **In:** a [`CaseSpec`] (views, modality, photometric, bits, size, finding
//! types and rate, transfer syntax), a seed and a case index.
//! **Out:** a [`SyntheticCase`] ([`generate_case`]): stored pixel values of a
//! plausible CR/DX chest film (body, lungs, ribs, clavicles, spine, heart,
//! diaphragm, vessels, noise), its metadata, nodule/TB findings with boxes
//! and labels, and a lung mask; as DICOM bytes or a file via [`dicom_bytes`]
//! / [`write_dicom`] in one of the [`OutputSyntax`]es; in bulk with
//! [`generate_batch`] (the `cxr-synth` tool): `DIR/NNNNNN.dcm`,
//! `ground_truth.jsonl` and `labels.csv`. This crate is for tests, model
//! training and load tests; it is never part of the deployed service. Same (spec, seed, index) → byte-identical output.

mod anatomy;
mod batch;
mod case;
mod dicom_out;
mod encode;
mod exposure;
mod findings;
mod grid;
mod lateral;
mod plan;
mod render;
mod rle;
mod rng;
mod skeleton;
mod spec;
mod syntax;
mod vessels;

pub use batch::{file_name, generate_batch, write_sidecars, TruthRecord};
pub use case::{
    Acquisition, CaseMeta, Finding, FindingKind, GroundTruth, Labels, NoduleInfo, Patient, Side,
    Study, SyntheticCase, TbInfo,
};
pub use dicom_out::{IMAGE_COMMENTS, IMPLEMENTATION_CLASS_UID, MANUFACTURER};
pub use encode::{check_syntax_available, dicom_bytes, write_dicom, WriteError};
pub use findings::MALIGNANT_DIAMETER_MM;
pub use spec::{
    CaseSpec, FindingSet, Margin, Modality, ModalityChoice, Photometric, PhotometricChoice,
    SpecError, View, ViewChoice,
};
pub use syntax::{syntax_table, Encoder, OutputSyntax};

use exposure::expose;
use findings::{add_findings, LUNG_THRESHOLD};
use plan::{identity, plan_case, Plan};
use render::render_scene;

/// Generates case `index` of the run with `seed`: plan, anatomy, findings,
/// exposure, identity. Deterministic in (spec, seed, index).
pub fn generate_case(spec: &CaseSpec, seed: u64, index: u64) -> Result<SyntheticCase, SpecError> {
    spec.validate()?;
    let plan = plan_case(spec, seed, index);
    let mut scene = render_scene(&plan, seed, index);
    let findings = add_findings(spec, &mut scene, seed, index);
    let lung_mask = scene
        .lung
        .data
        .iter()
        .map(|&v| v > LUNG_THRESHOLD)
        .collect();
    let exposed = expose(scene.atten, &plan, seed, index);
    let (pixels, window_center) = apply_photometric(&plan, exposed.pixels, exposed.window_center);
    let (patient, study, acquisition) = identity(seed, index, plan.view);
    let meta = CaseMeta {
        seed,
        index,
        view: plan.view,
        modality: plan.modality,
        photometric: plan.photometric,
        width: plan.width,
        height: plan.height,
        pixel_spacing_mm: (f64::from(plan.spacing_mm) * 1e6).round() / 1e6,
        bits_stored: plan.bits,
        signed: spec.signed,
        window_center,
        window_width: exposed.window_width,
        patient,
        study,
        acquisition,
    };
    let labels = labels_of(&findings);
    Ok(SyntheticCase {
        meta,
        pixels,
        truth: GroundTruth { findings, labels },
        lung_mask,
    })
}

/// MONOCHROME2 values and window centre as they are, or inverted for
/// MONOCHROME1.
fn apply_photometric(plan: &Plan, pixels: Vec<u16>, center: f64) -> (Vec<u16>, f64) {
    match plan.photometric {
        Photometric::Monochrome2 => (pixels, center),
        Photometric::Monochrome1 => {
            let max = ((1u32 << plan.bits) - 1) as u16;
            (
                pixels.into_iter().map(|v| max - v).collect(),
                f64::from(max) - center,
            )
        }
    }
}

/// Image-level labels of a finding list.
fn labels_of(findings: &[Finding]) -> Labels {
    Labels {
        tuberculosis: findings.iter().any(|f| f.kind == FindingKind::Tb),
        malignant_nodule: findings
            .iter()
            .any(|f| f.nodule.is_some_and(|n| n.malignant_looking)),
    }
}

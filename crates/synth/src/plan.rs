//! Per-case decisions drawn before rendering: view, modality, photometric
//! interpretation, bits, size and pixel spacing ([`Plan`]), and the fake
//! patient/study identity.

use rand::Rng;

use super::case::{Acquisition, Patient, Study};
use super::rng::{case_rng, derive_u128, uniform, Purpose};
use super::spec::{
    CaseSpec, Modality, ModalityChoice, Photometric, PhotometricChoice, View, ViewChoice,
};

/// The resolved acquisition plan of one case.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub view: View,
    pub modality: Modality,
    pub photometric: Photometric,
    pub bits: u8,
    pub width: u32,
    pub height: u32,
    /// Square pixel spacing, mm.
    pub spacing_mm: f32,
}

/// Largest side the random detector size produces.
const MAX_RANDOM_SIDE: f32 = 3000.0;

/// Draws the plan of case `index`. Every draw is made whether or not the
/// spec fixes the value, so fixing one choice leaves the others unchanged.
pub(crate) fn plan_case(spec: &CaseSpec, seed: u64, index: u64) -> Plan {
    let mut rng = case_rng(seed, index, Purpose::Plan);
    let draws: [f32; 7] = std::array::from_fn(|_| rng.random::<f32>());
    let view = pick_view(spec.view, draws[0]);
    let modality = pick_modality(spec.modality, draws[1]);
    let photometric = pick_photometric(spec.photometric, modality, draws[2]);
    let bits = spec.bits_for(10 + (draws[3] * 7.0).min(6.0) as u8);
    let fov_w = 350.0 + 80.0 * draws[4];
    let fov_h = 350.0 + 80.0 * draws[5];
    let (width, height, spacing_mm) = match spec.size {
        Some((w, h)) => (w, h, fov_w.max(fov_h) / w.max(h) as f32),
        None => {
            let spacing = (0.10 + 0.10 * draws[6]).max(fov_w.max(fov_h) / MAX_RANDOM_SIDE);
            let w = (fov_w / spacing).round() as u32;
            let h = (fov_h / spacing).round() as u32;
            (w, h, spacing)
        }
    };
    Plan {
        view,
        modality,
        photometric,
        bits,
        width,
        height,
        spacing_mm,
    }
}

fn pick_view(choice: ViewChoice, u: f32) -> View {
    match choice {
        ViewChoice::Pa => View::Pa,
        ViewChoice::Ap => View::Ap,
        ViewChoice::Lateral => View::Lateral,
        ViewChoice::Frontal if u < 0.7 => View::Pa,
        ViewChoice::Frontal => View::Ap,
        ViewChoice::Mixed if u < 0.6 => View::Pa,
        ViewChoice::Mixed if u < 0.9 => View::Ap,
        ViewChoice::Mixed => View::Lateral,
    }
}

fn pick_modality(choice: ModalityChoice, u: f32) -> Modality {
    match choice {
        ModalityChoice::Cr => Modality::Cr,
        ModalityChoice::Dx => Modality::Dx,
        ModalityChoice::DxForProcessing => Modality::DxForProcessing,
        ModalityChoice::Mixed if u < 0.5 => Modality::Cr,
        ModalityChoice::Mixed => Modality::Dx,
    }
}

fn pick_photometric(choice: PhotometricChoice, modality: Modality, u: f32) -> Photometric {
    match choice {
        PhotometricChoice::Monochrome1 => Photometric::Monochrome1,
        PhotometricChoice::Monochrome2 => Photometric::Monochrome2,
        PhotometricChoice::Auto if modality == Modality::Cr => Photometric::Monochrome1,
        PhotometricChoice::Auto => Photometric::Monochrome2,
        PhotometricChoice::Mixed if u < 0.5 => Photometric::Monochrome1,
        PhotometricChoice::Mixed => Photometric::Monochrome2,
    }
}

/// A `2.25.<decimal>` UID unique to (seed, index, label).
pub(crate) fn uid(seed: u64, index: u64, label: &str) -> String {
    format!("2.25.{}", derive_u128(seed, index, label))
}

/// Patient, study and technique values of case `index`.
pub(crate) fn identity(seed: u64, index: u64, view: View) -> (Patient, Study, Acquisition) {
    let mut rng = case_rng(seed, index, Purpose::Identity);
    let study_day = rng.random_range(0..6 * 365);
    let (sy, sm, sd) = civil_date(2019, study_day);
    let age_years: u32 = rng.random_range(18..=90);
    let (bm, bd) = (rng.random_range(1..=12u32), rng.random_range(1..=28u32));
    let had_birthday = (bm, bd) <= (sm, sd);
    let birth_year = sy - age_years - u32::from(!had_birthday);
    let sex = if rng.random::<bool>() { 'F' } else { 'M' };
    let secs: u32 = rng.random_range(7 * 3600..19 * 3600);
    let patient = Patient {
        name: format!("SYNTH^{index:04}"),
        id: format!(
            "SYN{:010}",
            derive_u128(seed, index, "patient-id") % 10_000_000_000
        ),
        birth_date: format!("{birth_year:04}{bm:02}{bd:02}"),
        sex,
        age_years,
    };
    let study = Study {
        study_uid: uid(seed, index, "study"),
        series_uid: uid(seed, index, "series"),
        sop_instance_uid: uid(seed, index, "instance"),
        date: format!("{sy:04}{sm:02}{sd:02}"),
        time: format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60),
        accession: format!(
            "SY{:014}",
            derive_u128(seed, index, "accession") % 100_000_000_000_000
        ),
    };
    (patient, study, technique(&mut rng, view))
}

fn technique<R: Rng>(rng: &mut R, view: View) -> Acquisition {
    let (kvp, mas, sid) = match view {
        View::Pa => (uniform(rng, 110.0, 125.0), uniform(rng, 1.0, 3.5), 1800),
        View::Ap => (uniform(rng, 85.0, 100.0), uniform(rng, 1.5, 4.0), 1000),
        View::Lateral => (uniform(rng, 115.0, 125.0), uniform(rng, 4.0, 9.0), 1800),
    };
    Acquisition {
        kvp: kvp.round(),
        mas: (mas * 10.0).round() / 10.0,
        exposure_time_ms: rng.random_range(4..25),
        sid_mm: sid,
    }
}

/// (year, month, day) of `day` days after 1 January of `year`.
fn civil_date(mut year: u32, mut day: u32) -> (u32, u32, u32) {
    let leap = |y: u32| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if day < len {
            break;
        }
        day -= len;
        year += 1;
    }
    let feb = if leap(year) { 29 } else { 28 };
    let months = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 1;
    for len in months {
        if day < len {
            break;
        }
        day -= len;
        month += 1;
    }
    (year, month, day + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(2019, 0), (2019, 1, 1));
        assert_eq!(civil_date(2019, 31), (2019, 2, 1));
        assert_eq!(civil_date(2020, 59), (2020, 2, 29));
        assert_eq!(civil_date(2019, 365), (2020, 1, 1));
    }

    #[test]
    fn uids_are_well_formed() {
        let u = uid(1, 2, "study");
        assert!(u.starts_with("2.25.") && u.len() <= 64);
        assert!(u[5..].chars().all(|c| c.is_ascii_digit()));
        assert!(!u[5..].starts_with('0'));
    }

    #[test]
    fn random_sizes_respect_detector_limits() {
        let spec = CaseSpec::default();
        for i in 0..200 {
            let p = plan_case(&spec, 9, i);
            assert!(p.width <= 3000 && p.height <= 3000 && p.width >= 1024);
            assert!((0.1..=0.2001).contains(&p.spacing_mm));
            assert!((10..=16).contains(&p.bits));
        }
    }
}

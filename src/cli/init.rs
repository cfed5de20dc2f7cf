//! `doorbuster init NAME`: a commented scenario template in NAME.yaml.

use std::path::PathBuf;

use anyhow::Context;
use doorbuster::exit::Exit;
use doorbuster::scenario;

pub fn init(name: &str, force: bool) -> anyhow::Result<Exit> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        errln!(
            "init: the name {name:?} must be lowercase letters, digits and dashes, e.g. flash-sale"
        );
        return Ok(Exit::BadInput);
    }
    let path = PathBuf::from(format!("{name}.yaml"));
    if path.exists() && !force {
        errln!(
            "init: {} exists; pass --force to overwrite it",
            path.display()
        );
        return Ok(Exit::BadInput);
    }
    std::fs::write(&path, scenario::template(name))
        .with_context(|| format!("cannot write {}", path.display()))?;
    outln!(
        "wrote {}; run it with: doorbuster run {}",
        path.display(),
        path.display()
    );
    Ok(Exit::Success)
}

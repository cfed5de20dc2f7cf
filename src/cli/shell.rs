//! `doorbuster completions SHELL` and `doorbuster man`: generated from the one clap
//! definition of the command line, so they never fall behind it.

use doorbuster::exit::Exit;

pub fn completions(shell: clap_complete::Shell, command: &mut clap::Command) -> Exit {
    let mut script = Vec::new();
    clap_complete::generate(shell, command, "doorbuster", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Exit::Success
}

pub fn man(command: clap::Command) -> Exit {
    let mut page = Vec::new();
    match clap_mangen::Man::new(command).render(&mut page) {
        Ok(()) => {
            out!("{}", String::from_utf8_lossy(&page));
            Exit::Success
        }
        Err(e) => {
            errln!("cannot render the man page: {e}");
            Exit::CannotRun
        }
    }
}

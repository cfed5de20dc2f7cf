//! The `doorbuster` command: parse arguments, hand the subcommand to `cli::dispatch`, and exit
//! with the code it names (`doorbuster::exit`). Nothing else lives here.

use std::process::ExitCode;

use clap::Parser;
use doorbuster::exit::Exit;

#[macro_use]
mod cli;

fn main() -> ExitCode {
    let cli = cli::args::Cli::parse();
    cli::init_logging();
    match cli::dispatch(cli.command) {
        Ok(exit) => exit.into(),
        Err(e) => {
            errln!("error: {e:#}");
            Exit::CannotRun.into()
        }
    }
}

/// mimalloc instead of glibc malloc: the pipeline allocates and frees on both worker threads
/// at high rates, and glibc's arena locks showed up as 15-20 % of a profile at 20k orders/s
/// (measured in reports/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

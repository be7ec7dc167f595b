//! `shmcast service install | uninstall | run`: the camera service as a
//! Windows service, started at boot by the service control manager (SCM)
//! as LocalSystem, serving the channels of a config file
//! (`serve --config`).
//!
//! - `install --config FILE` registers it (automatic start) with the
//!   config's absolute path; `uninstall` stops and removes it.
//! - `run --config FILE` is what the SCM starts. Started from a console
//!   instead (the SCM refuses to connect), it serves in the foreground, so
//!   the same path can be run and tested without a service manager.
//! - A stop or shutdown request from the SCM stops every channel as Ctrl-C
//!   does: ffmpeg ended, names released, status "stopped".
//! - Logs: a service has no console, so its log is the file next to the
//!   config with `.log` added (`C:\ProgramData\shmcast\cameras.toml.log`),
//!   one stamped line per event (see `log.rs`), rotated at 10 MB with the
//!   five before it kept (`.log.1` the newest); the SCM's own events name
//!   start and stop failures.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

/// A service error with its OS cause (the crate's own text alone says
/// only "IO error in winapi call").
fn why(e: windows_service::Error) -> String {
    match e {
        windows_service::Error::Winapi(os) => os.to_string(),
        other => crate::one_line(&other),
    }
}

/// The service's name (`sc query shmcast`).
pub const SERVICE_NAME: &str = "shmcast";

/// The config's absolute path, as users write one (no `\\?\`): it is
/// what the service's command line, its description and its log show.
fn absolute(config: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(config)
        .map(|p| PathBuf::from(crate::output::shown(&p)))
        .map_err(|e| format!("cannot find {}: {e}", config.display()))
}

/// Registers the service, to start at boot with `config`.
pub fn install(config: &Path, ffmpeg: &str) -> Result<(), String> {
    let config = absolute(config)?;
    // A config that does not parse is refused now, not at the next boot.
    crate::config::load(&config, ffmpeg)?;
    // The event source first: if this fails, nothing is half-installed.
    crate::eventlog::register()?;
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(|e| {
        format!(
            "cannot reach the service manager: {} (run as an administrator)",
            why(e)
        )
    })?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: "shmcast camera service".into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: std::env::current_exe().map_err(|e| e.to_string())?,
        launch_arguments: launch_arguments(&config, ffmpeg),
        dependencies: vec![],
        account_name: None, // LocalSystem
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .map_err(|e| format!("cannot create service {SERVICE_NAME}: {}", why(e)))?;
    let _ = service.set_description(format!(
        "Publishes the cameras of {} into named shared memory (shmcast)",
        config.display()
    ));
    crate::output::printed(crate::output::print(|out| {
        writeln!(
            out,
            "installed service {SERVICE_NAME} (automatic start) serving {}; start it now with: sc start {SERVICE_NAME}",
            config.display()
        )
    }))
}

/// Asks the running service to reload its config (the parameter-change
/// control, as `sc control shmcast paramchange` sends it).
pub fn reload() -> Result<(), String> {
    use windows_sys::Win32::System::Services::{
        ControlService, SERVICE_CONTROL_PARAMCHANGE, SERVICE_STATUS,
    };
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| format!("cannot reach the service manager: {}", why(e)))?;
    let service = manager
        .open_service(SERVICE_NAME, ServiceAccess::PAUSE_CONTINUE)
        .map_err(|e| {
            format!(
                "cannot open service {SERVICE_NAME}: {} (is it installed? reloading needs an administrator)",
                why(e)
            )
        })?;
    let mut status = SERVICE_STATUS {
        dwServiceType: 0,
        dwCurrentState: 0,
        dwControlsAccepted: 0,
        dwWin32ExitCode: 0,
        dwServiceSpecificExitCode: 0,
        dwCheckPoint: 0,
        dwWaitHint: 0,
    };
    // SAFETY: the handle is the open service's, valid while `service`
    // lives; `status` is a SERVICE_STATUS the call fills in.
    let ok = unsafe {
        ControlService(
            service.raw_handle(),
            SERVICE_CONTROL_PARAMCHANGE,
            &mut status,
        )
    };
    if ok == 0 {
        return Err(format!(
            "cannot ask service {SERVICE_NAME} to reload: {} (is it running?)",
            std::io::Error::last_os_error()
        ));
    }
    crate::output::printed(crate::output::print(|out| {
        writeln!(
            out,
            "asked service {SERVICE_NAME} to reload its config; its log says what changed"
        )
    }))
}

/// `service run --config CONFIG [--ffmpeg PATH]`. The service runs as
/// LocalSystem, which sees neither the installing user's PATH nor their
/// SHMCAST_FFMPEG: the ffmpeg found now is written into its command line.
fn launch_arguments(config: &Path, ffmpeg: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "service".into(),
        "run".into(),
        "--config".into(),
        config.as_os_str().to_owned(),
    ];
    match find_program(ffmpeg) {
        Some(path) => {
            args.push("--ffmpeg".into());
            args.push(path.into_os_string());
        }
        None => eprintln!(
            "warning: {ffmpeg} is not on this PATH; the service will look for it on the system PATH"
        ),
    }
    args
}

/// `program` as an absolute path: itself if it names a file, else the
/// first `program` or `program.exe` on the PATH.
fn find_program(program: &str) -> Option<PathBuf> {
    let direct = Path::new(program);
    if direct.components().count() > 1 {
        return std::fs::canonicalize(direct).ok();
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .flat_map(|dir| [dir.join(program), dir.join(format!("{program}.exe"))])
        .find(|p| p.is_file())
}

/// Stops the service if it runs, and removes it.
pub fn uninstall() -> Result<(), String> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| {
            format!(
                "cannot reach the service manager: {} (run as an administrator)",
                why(e)
            )
        })?;
    let service = manager
        .open_service(
            SERVICE_NAME,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(|e| {
            format!(
                "cannot open service {SERVICE_NAME}: {} (is it installed?)",
                why(e)
            )
        })?;
    let running = |s: &windows_service::service::Service| {
        s.query_status()
            .map(|st| st.current_state != ServiceState::Stopped)
            .unwrap_or(false)
    };
    if running(&service) {
        let _ = service.stop();
        for _ in 0..100 {
            if !running(&service) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    service
        .delete()
        .map_err(|e| format!("cannot remove service {SERVICE_NAME}: {}", why(e)))?;
    crate::eventlog::unregister();
    crate::output::printed(crate::output::print(|out| {
        writeln!(out, "removed service {SERVICE_NAME}")
    }))
}

/// The handle to report our state with, for the control handler too.
static STATUS: OnceLock<service_control_handler::ServiceStatusHandle> = OnceLock::new();

fn report(state: ServiceState, exit: u32) {
    let Some(status) = STATUS.get() else {
        return;
    };
    let _ = status.set_service_status(ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP
                | ServiceControlAccept::SHUTDOWN
                | ServiceControlAccept::PARAM_CHANGE
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: ServiceExitCode::Win32(exit),
        checkpoint: 0,
        wait_hint: Duration::from_secs(5),
        process_id: None,
    });
}

/// What `service_main` serves (the SCM passes no arguments of ours).
static CONFIG: OnceLock<(PathBuf, String)> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Runs as the service (started by the SCM), or in the foreground when
/// started from a console.
pub fn run(config: &Path, ffmpeg: &str) -> Result<(), String> {
    let config = absolute(config)?;
    let _ = CONFIG.set((config.clone(), ffmpeg.to_owned()));
    match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
        Ok(()) => Ok(()),
        // ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: not started by the SCM.
        Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(1063) => {
            crate::log::info(
                "",
                "not started by the service manager: serving in the foreground",
            );
            // The Event Log is the service's; a console run reports to it
            // only when asked (how the call path is tested under Wine).
            if std::env::var_os("SHMCAST_EVENT_LOG").is_some() {
                crate::eventlog::enable();
            }
            let ffmpeg = ffmpeg.to_owned();
            crate::serve::run_config(move || crate::config::load(&config, &ffmpeg), None)
        }
        Err(e) => Err(format!("cannot start as a service: {}", why(e))),
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let Some((config, ffmpeg)) = CONFIG.get() else {
        return;
    };
    log_to_file(config);
    crate::eventlog::enable();
    // A service has no stderr: a panic is said in the log, and reported.
    std::panic::set_hook(Box::new(|panic| {
        crate::log::notable(crate::log::Level::Error, "", format!("panic: {panic}"));
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let on_control = {
        let (stop, reload) = (Arc::clone(&stop), Arc::clone(&reload));
        move |control| match control {
            // `sc control shmcast paramchange`: reload the config.
            ServiceControl::ParamChange => {
                crate::log::info("", "the service manager asks for a reload (paramchange)");
                reload.store(true, Ordering::SeqCst);
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Stop | ServiceControl::Shutdown => {
                crate::log::info("", "the service manager asks us to stop");
                report(ServiceState::StopPending, 0);
                stop.store(true, Ordering::SeqCst);
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let Ok(status) = service_control_handler::register(SERVICE_NAME, on_control) else {
        crate::log::error("", "cannot register with the service manager");
        return;
    };
    let _ = STATUS.set(status);
    report(ServiceState::Running, 0);
    crate::log::notable(
        crate::log::Level::Info,
        "",
        format!(
            "service started (pid {}, version {}): serving {}",
            std::process::id(),
            env!("CARGO_PKG_VERSION"),
            crate::output::shown(config)
        ),
    );
    let load = {
        let (config, ffmpeg) = (config.clone(), ffmpeg.clone());
        move || crate::config::load(&config, &ffmpeg)
    };
    let names = Arc::new(std::sync::Mutex::new(Vec::new()));
    let result = load().and_then(|channels| {
        let reload = crate::serve::Reload {
            requested: reload,
            load: Box::new(load),
        };
        crate::serve::serve_all(channels, &stop, Some(reload), &names)
    });
    let exit = match &result {
        Ok(()) => 0,
        Err(e) => {
            crate::log::notable(crate::log::Level::Error, "", format!("service ends: {e}"));
            1
        }
    };
    crate::log::notable(crate::log::Level::Info, "", "service stopped");
    report(ServiceState::Stopped, exit);
}

/// The service log's size limit, and how many full logs are kept.
const LOG_MAX_BYTES: u64 = 10 << 20;
const LOG_KEEP: u32 = 5;

/// Sends every log line (ffmpeg's included) to `CONFIG.log`, rotated.
fn log_to_file(config: &Path) {
    let mut path = config.as_os_str().to_owned();
    path.push(".log");
    // Nowhere else to say it: the SCM shows the service running, and the
    // absence of the file says the rest.
    let _ = crate::log::to_file(Path::new(&path), LOG_MAX_BYTES, LOG_KEEP);
}

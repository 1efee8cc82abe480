//! Devices: the CPU backend always, CUDA behind the `cuda` feature and burn's wgpu backend
//! (Vulkan, Metal, DX12) behind the `wgpu` feature, with a clear error instead of burn's panic
//! when no GPU or driver is present.

use crate::error::{DpError, Result};

/// The CPU backend (burn's `flex`).
pub type Cpu = burn::backend::Flex;

/// Checks that a CUDA driver is installed and has a device `index`, without touching burn
/// (whose first CUDA call panics when there is none).
#[cfg(feature = "cuda")]
pub fn check_cuda(index: usize) -> Result<()> {
    // SAFETY: loading the CUDA driver library runs its initializers, which is what any CUDA
    // program does; the two symbols have the C signatures of the CUDA driver API.
    unsafe {
        let lib = libloading::Library::new("libcuda.so.1")
            .or_else(|_| libloading::Library::new("libcuda.so"))
            .map_err(|e| DpError::DeviceUnavailable(format!("no CUDA driver (libcuda): {e}")))?;
        let init: libloading::Symbol<unsafe extern "C" fn(u32) -> i32> = lib
            .get(b"cuInit")
            .map_err(|e| DpError::DeviceUnavailable(format!("cuInit: {e}")))?;
        let code = init(0);
        if code != 0 {
            return Err(DpError::DeviceUnavailable(format!(
                "cuInit failed with CUDA error {code}"
            )));
        }
        let count: libloading::Symbol<unsafe extern "C" fn(*mut i32) -> i32> = lib
            .get(b"cuDeviceGetCount")
            .map_err(|e| DpError::DeviceUnavailable(format!("cuDeviceGetCount: {e}")))?;
        let mut n = 0i32;
        let code = count(&mut n);
        if code != 0 || (n as usize) <= index {
            return Err(DpError::DeviceUnavailable(format!(
                "CUDA device {index} requested, {n} present"
            )));
        }
    }
    Ok(())
}

/// Without the `cuda` feature there is never a CUDA device.
#[cfg(not(feature = "cuda"))]
pub fn check_cuda(index: usize) -> Result<()> {
    Err(DpError::DeviceUnavailable(format!(
        "CUDA device {index} requested, but this build has no CUDA support (build with --features cuda)"
    )))
}

/// burn's wgpu backend: cubecl's kernels (the compiler of the CUDA backend too) on a Vulkan,
/// Metal or DX12 adapter — AMD, Intel, Apple and NVIDIA GPUs, or Mesa's lavapipe on a CPU.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// Sets up burn's wgpu backend on its default device (the machine's best adapter) and
/// describes the adapter, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits) (Cpu, Vulkan)"`. Without an
/// adapter this is an error, where burn's first use of the device would panic. Call it before
/// anything else touches the wgpu device to get the adapter's name (after that, it checks that
/// the device computes); later calls return the first call's answer.
#[cfg(feature = "wgpu")]
pub fn init_wgpu() -> Result<String> {
    use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, WgpuDevice};
    use std::sync::OnceLock;
    static SETUP: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            // cubecl panics when no adapter exists: silence that panic's message and turn it
            // into an error.
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let setup = std::panic::catch_unwind(|| {
                init_setup::<AutoGraphicsApi>(&WgpuDevice::default(), Default::default())
            });
            std::panic::set_hook(hook);
            match setup {
                Ok(setup) => {
                    let info = setup.adapter.get_info();
                    Ok(format!(
                        "{} ({:?}, {:?})",
                        info.name, info.device_type, info.backend
                    ))
                }
                Err(panic) => {
                    // burn may have set the device up already (its first use does): then a
                    // tiny computation tells whether it works.
                    let hook = std::panic::take_hook();
                    std::panic::set_hook(Box::new(|_| {}));
                    let works = std::panic::catch_unwind(|| {
                        let x = burn::tensor::Tensor::<Wgpu, 1>::from_floats(
                            [2.0],
                            &WgpuDevice::default(),
                        );
                        x.clone().mul(x).into_data().to_vec::<f32>().ok() == Some(vec![4.0])
                    });
                    std::panic::set_hook(hook);
                    if matches!(works, Ok(true)) {
                        return Ok("the default wgpu adapter (set up earlier)".into());
                    }
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "no adapter".into());
                    Err(why)
                }
            }
        })
        .clone()
        .map_err(|why| {
            DpError::DeviceUnavailable(format!(
                "no wgpu adapter (Vulkan, Metal or DX12 driver): {why}"
            ))
        })
}

/// Without the `wgpu` feature there is never a wgpu device.
#[cfg(not(feature = "wgpu"))]
pub fn init_wgpu() -> Result<String> {
    Err(DpError::DeviceUnavailable(
        "a wgpu device was requested, but this build has no wgpu support (build with --features wgpu)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_gpu_is_an_error_not_a_panic() {
        // CI machines have no GPU: either the build lacks CUDA or the driver is absent.
        if let Err(e) = super::check_cuda(0) {
            assert!(e.to_string().contains("CUDA"), "{e}");
        }
    }
}

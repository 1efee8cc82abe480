//! Devices: the CPU backend always, CUDA behind the `cuda` feature, with a clear error instead
//! of burn's panic when no GPU or driver is present.

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

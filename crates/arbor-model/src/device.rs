//! Which device runs a model, named without burn types so that callers (the CLI, configs) need
//! not see burn. Kinds other than the CPU exist only when the crate is built with their feature.
//!
//! CUDA goes through burn's LibTorch backend (PyTorch's kernels, linked against the `torch`
//! that pip installs): burn's own CUDA backend (cubecl) needs an LLVM bundle that no package
//! registry carries. burn marks its LibTorch backend deprecated; it is the one CUDA path that
//! builds from the registries, so arbor uses it on purpose.
use burn::tensor::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    #[default]
    Cpu,
    #[cfg(feature = "gpu-wgpu")]
    Wgpu,
    /// PyTorch's CPU kernels through burn's LibTorch backend.
    #[cfg(feature = "libtorch")]
    LibTorch,
    #[cfg(feature = "gpu-cuda")]
    Cuda,
}

impl DeviceKind {
    /// The burn device (flex on the CPU; the default adapter for wgpu; CUDA device 0).
    #[allow(deprecated)] // burn's LibTorch devices: see the module comment
    pub fn device(self) -> Device {
        match self {
            Self::Cpu => Device::flex(),
            #[cfg(feature = "gpu-wgpu")]
            Self::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "libtorch")]
            Self::LibTorch => Device::libtorch(),
            #[cfg(feature = "gpu-cuda")]
            Self::Cuda => Device::libtorch_cuda(0),
        }
    }

    /// The name `--device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            #[cfg(feature = "gpu-wgpu")]
            Self::Wgpu => "wgpu",
            #[cfg(feature = "libtorch")]
            Self::LibTorch => "libtorch",
            #[cfg(feature = "gpu-cuda")]
            Self::Cuda => "cuda",
        }
    }
}

impl std::str::FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Self::Cpu),
            #[cfg(feature = "gpu-wgpu")]
            "wgpu" => Ok(Self::Wgpu),
            #[cfg(feature = "libtorch")]
            "libtorch" => Ok(Self::LibTorch),
            #[cfg(feature = "gpu-cuda")]
            "cuda" => cuda_present().map(|()| Self::Cuda),
            #[allow(unreachable_patterns)]
            "wgpu" | "cuda" => Err(format!(
                "device `{s}` needs arbor built with `--features gpu-{s}`"
            )),
            #[allow(unreachable_patterns)]
            "libtorch" => {
                Err("device `libtorch` needs arbor built with `--features libtorch`".into())
            }
            _ => Err(format!("unknown device `{s}` (cpu, libtorch, wgpu, cuda)")),
        }
    }
}

/// In config files a device is its `--device` name (`device = "libtorch"`).
impl serde::Serialize for DeviceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for DeviceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// LibTorch panics on the first tensor of a CUDA device it cannot open; ask once, up front,
/// so that `--device cuda` on a machine without one is a clear error.
#[cfg(feature = "gpu-cuda")]
#[allow(deprecated)] // burn's LibTorch devices: see the module comment
fn cuda_present() -> Result<(), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| {
        burn::tensor::Tensor::<1>::zeros([1], &Device::libtorch_cuda(0)).into_data()
    });
    std::panic::set_hook(hook);
    probe.map(|_| ()).map_err(|e| {
        let why = e
            .downcast_ref::<String>()
            // tch's error, debug-printed: keep its first line ("Found no NVIDIA driver …").
            .map(|m| {
                m.rsplit("Torch(\"")
                    .next()
                    .unwrap_or(m)
                    .split("\\n")
                    .next()
                    .unwrap_or(m)
                    .to_string()
            })
            .unwrap_or_default();
        format!("device `cuda`: LibTorch cannot open CUDA device 0 ({why})")
    })
}

#[cfg(test)]
mod tests {
    use super::DeviceKind;

    /// Names round-trip; a kind this build lacks names the feature that brings it.
    #[test]
    fn names_round_trip_and_a_missing_feature_is_named() {
        let cpu: DeviceKind = "cpu".parse().unwrap();
        assert_eq!(cpu.name().parse::<DeviceKind>(), Ok(DeviceKind::Cpu));
        #[cfg(not(feature = "libtorch"))]
        assert!("libtorch"
            .parse::<DeviceKind>()
            .unwrap_err()
            .contains("--features libtorch"));
        #[cfg(not(feature = "gpu-cuda"))]
        assert!("cuda"
            .parse::<DeviceKind>()
            .unwrap_err()
            .contains("--features gpu-cuda"));
        assert!("tpu"
            .parse::<DeviceKind>()
            .unwrap_err()
            .contains("unknown device"));
    }
}

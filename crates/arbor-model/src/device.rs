//! Which device runs a model, named without burn types so that callers (the CLI, configs) need
//! not see burn. GPU kinds exist only when the crate is built with their feature.
use burn::tensor::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    #[default]
    Cpu,
    #[cfg(feature = "gpu-wgpu")]
    Wgpu,
    #[cfg(feature = "gpu-cuda")]
    Cuda,
}

impl DeviceKind {
    /// The burn device (flex on the CPU; the default adapter for wgpu; CUDA device 0).
    pub fn device(self) -> Device {
        match self {
            Self::Cpu => Device::flex(),
            #[cfg(feature = "gpu-wgpu")]
            Self::Wgpu => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "gpu-cuda")]
            Self::Cuda => Device::cuda(0),
        }
    }
}

impl DeviceKind {
    /// The name `--device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            #[cfg(feature = "gpu-wgpu")]
            Self::Wgpu => "wgpu",
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
            #[cfg(feature = "gpu-cuda")]
            "cuda" => Ok(Self::Cuda),
            #[allow(unreachable_patterns)]
            "wgpu" | "cuda" => Err(format!(
                "device `{s}` needs arbor built with `--features gpu-{s}`"
            )),
            _ => Err(format!("unknown device `{s}` (cpu, wgpu, cuda)")),
        }
    }
}

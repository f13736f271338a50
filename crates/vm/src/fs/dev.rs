//! Character devices: the standard streams and /dev/null, /dev/zero, /dev/random,
//! /dev/urandom. None of them holds state, so clones share them.

use super::{CloneMap, File, IoctlAnswer, Kind, Stat, SysResult, SYNTH_DEV};
use std::any::Any;
use std::sync::Arc;

/// A standard stream. Stdin is always at end of file; output goes to the host log (the
/// syscall layer recognises [`Stdio`] and forwards the bytes, as only it sees the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// fd 0.
    In,
    /// fd 1.
    Out,
    /// fd 2.
    Err,
}

impl File for Stdio {
    fn kind(&self) -> Kind {
        Kind::CharDevice
    }

    fn read(&self, _buf: &mut [u8], _offset: u64, _nonblock: bool) -> SysResult<usize> {
        match self {
            Stdio::In => Ok(0),
            _ => Err(libc::EBADF),
        }
    }

    fn write(&self, buf: &[u8], _offset: u64, _append: bool) -> SysResult<(usize, u64)> {
        match self {
            Stdio::In => Err(libc::EBADF),
            // The syscall layer forwards output before it gets here; counted as written.
            _ => Ok((buf.len(), 0)),
        }
    }

    fn stat(&self) -> SysResult<Stat> {
        let n = *self as u64;
        Ok(Stat {
            rdev: 0x8800 + n, // a pseudo-terminal, as a shell would give
            ..Stat::synthetic(Kind::CharDevice, 0o620, 1 + n, 0)
        })
    }

    fn poll(&self) -> super::Readiness {
        super::Readiness {
            // Stdin is at EOF (readable); output is always accepted.
            mask: match self {
                Stdio::In => super::events::IN,
                _ => super::events::OUT,
            },
            ..super::Readiness::default()
        }
    }

    fn ioctl(&self, request: u64) -> SysResult<IoctlAnswer> {
        match request {
            // FIONREAD: nothing waiting.
            0x541B => Ok(IoctlAnswer::PutInt(0)),
            // Not a terminal: isatty() is false, programs pick plain output.
            _ => Err(libc::ENOTTY),
        }
    }

    fn deep_clone(&self, _: &mut CloneMap) -> Arc<dyn File> {
        Arc::new(*self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A /dev device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// Reads EOF, swallows writes.
    Null,
    /// Reads zeros, swallows writes.
    Zero,
    /// /dev/random and /dev/urandom: the bytes getrandom gives.
    Random,
}

impl Device {
    /// The device a /dev path names.
    pub fn by_path(path: &str) -> Option<Device> {
        Some(match path {
            "/dev/null" => Device::Null,
            "/dev/zero" => Device::Zero,
            "/dev/random" | "/dev/urandom" => Device::Random,
            _ => return None,
        })
    }
}

impl File for Device {
    fn kind(&self) -> Kind {
        Kind::CharDevice
    }

    fn seekable(&self) -> bool {
        // lseek on these succeeds on Linux and does nothing.
        true
    }

    fn read(&self, buf: &mut [u8], _offset: u64, _nonblock: bool) -> SysResult<usize> {
        match self {
            Device::Null => Ok(0),
            Device::Zero => {
                buf.fill(0);
                Ok(buf.len())
            }
            Device::Random => {
                crate::syscalls::fill_random(buf);
                Ok(buf.len())
            }
        }
    }

    fn write(&self, buf: &[u8], offset: u64, _append: bool) -> SysResult<(usize, u64)> {
        Ok((buf.len(), offset))
    }

    fn stat(&self) -> SysResult<Stat> {
        let minor = match self {
            Device::Null => 3,
            Device::Zero => 5,
            Device::Random => 9,
        };
        Ok(Stat {
            dev: SYNTH_DEV,
            rdev: 0x100 | minor, // major 1 (mem)
            ..Stat::synthetic(Kind::CharDevice, 0o666, 0x100 + minor, 0)
        })
    }

    fn epollable(&self) -> bool {
        // Linux's mem devices have no poll method: epoll_ctl says EPERM.
        false
    }

    fn ioctl(&self, _request: u64) -> SysResult<IoctlAnswer> {
        // The random driver answers unknown ioctls (TCGETS from stdio's isatty) with EINVAL.
        Err(match self {
            Device::Random => libc::EINVAL,
            _ => libc::ENOTTY,
        })
    }

    fn deep_clone(&self, _: &mut CloneMap) -> Arc<dyn File> {
        Arc::new(*self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_read_as_linux_does() {
        let mut b = [7u8; 64];
        assert_eq!(Device::Null.read(&mut b, 0, false), Ok(0));
        assert_eq!(Device::Zero.read(&mut b, 0, false), Ok(64));
        assert_eq!(b, [0; 64]);
        assert_eq!(Device::Random.read(&mut b, 0, false), Ok(64));
        let first = b;
        Device::Random.read(&mut b, 0, false).unwrap();
        assert_ne!(first, b, "two 64-byte random reads are equal");
        assert_eq!(Device::by_path("/dev/urandom"), Some(Device::Random));
        assert_eq!(Device::by_path("/dev/sda"), None);
        assert_eq!(Device::Random.ioctl(0x5401), Err(libc::EINVAL));
        assert_eq!(Device::Null.stat().unwrap().mode, libc::S_IFCHR | 0o666);
        assert_eq!(Stdio::In.read(&mut b, 0, false), Ok(0));
        assert_eq!(Stdio::In.write(&b, 0, false), Err(libc::EBADF));
    }
}

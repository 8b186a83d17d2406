//! Borrowing numpy arrays of the element types the kernels accept, without copying.
//!
//! The Python side (`mlvec._arrays`) has already turned numpy arrays and CPU tensors into
//! C-contiguous numpy arrays; these functions borrow them, and say which argument is at fault
//! when something else arrives. bfloat16 has no numpy dtype: the Python side passes a `uint16`
//! view of the bits with `bf16=True`, and it is reinterpreted here.

use half::{bf16, f16};
use numpy::{Element, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A C-contiguous 2-D float array of one of the supported element types.
pub enum Floats2<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F16(PyReadonlyArray2<'py, f16>),
    BF16(PyReadonlyArray2<'py, u16>),
}

impl<'py> Floats2<'py> {
    pub fn extract(arg: &'static str, obj: &Bound<'py, PyAny>, bf16: bool) -> PyResult<Self> {
        let out = if bf16 {
            obj.extract::<PyReadonlyArray2<u16>>().ok().map(Floats2::BF16)
        } else if let Ok(a) = obj.extract::<PyReadonlyArray2<f32>>() {
            Some(Floats2::F32(a))
        } else {
            obj.extract::<PyReadonlyArray2<f16>>().ok().map(Floats2::F16)
        };
        let out = out.ok_or_else(|| {
            wrong_type(
                arg,
                "a 2-D numpy array of float32, float16 or bfloat16 (as uint16 bits)",
                obj,
            )
        })?;
        let contiguous = match &out {
            Floats2::F32(a) => a.is_c_contiguous(),
            Floats2::F16(a) => a.is_c_contiguous(),
            Floats2::BF16(a) => a.is_c_contiguous(),
        };
        if !contiguous {
            return Err(not_contiguous(arg));
        }
        Ok(out)
    }

    fn shape(&self) -> &[usize] {
        match self {
            Floats2::F32(a) => a.shape(),
            Floats2::F16(a) => a.shape(),
            Floats2::BF16(a) => a.shape(),
        }
    }

    pub fn rows(&self) -> usize {
        self.shape()[0]
    }

    pub fn cols(&self) -> usize {
        self.shape()[1]
    }

    pub fn dtype_name(&self) -> &'static str {
        match self {
            Floats2::F32(_) => "float32",
            Floats2::F16(_) => "float16",
            Floats2::BF16(_) => "bfloat16",
        }
    }
}

/// The typed slices behind a [`Floats2`]; all borrow the numpy buffer.
pub enum FloatSlice<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
}

impl Floats2<'_> {
    pub fn slice(&self) -> FloatSlice<'_> {
        match self {
            Floats2::F32(a) => FloatSlice::F32(a.as_slice().expect("checked contiguous")),
            Floats2::F16(a) => FloatSlice::F16(a.as_slice().expect("checked contiguous")),
            Floats2::BF16(a) => {
                let s = a.as_slice().expect("checked contiguous");
                // SAFETY: bf16 is a #[repr(transparent)] wrapper around u16.
                FloatSlice::BF16(unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<bf16>(), s.len()) })
            }
        }
    }
}

/// A C-contiguous 2-D float32 array borrowed for writing in place (a logits tile).
pub fn writable_f32_2d<'py>(
    arg: &'static str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<PyReadwriteArray2<'py, f32>> {
    let a: PyReadwriteArray2<f32> = extract(arg, "a writable 2-D float32 numpy array", obj)?;
    if !a.is_c_contiguous() {
        return Err(not_contiguous(arg));
    }
    Ok(a)
}

/// A contiguous 1-D numpy array of `T` (`dtype` names it in the error).
pub fn readonly_1d<'py, T: Element>(
    arg: &'static str,
    dtype: &str,
    obj: &Bound<'py, PyAny>,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    let a: PyReadonlyArray1<T> = extract(arg, &format!("a 1-D {dtype} numpy array"), obj)?;
    contiguous1(arg, &a)?;
    Ok(a)
}

/// `obj` as an `A`, or a TypeError saying what `arg` should have been and what it was.
fn extract<'py, A: FromPyObject<'py>>(arg: &str, expected: &str, obj: &Bound<'py, PyAny>) -> PyResult<A> {
    obj.extract::<A>().map_err(|_| wrong_type(arg, expected, obj))
}

fn wrong_type(arg: &str, expected: &str, obj: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!("{arg}: expected {expected}, got {}", describe(obj)))
}

/// A short description of a Python object for error messages: numpy dtype and shape, or type.
pub fn describe(obj: &Bound<'_, PyAny>) -> String {
    let dtype = obj.getattr("dtype").map(|d| d.to_string()).unwrap_or_default();
    let shape = obj.getattr("shape").map(|d| d.to_string()).unwrap_or_default();
    if dtype.is_empty() {
        obj.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "object".into())
    } else {
        format!("array of dtype {dtype} and shape {shape}")
    }
}

fn not_contiguous(arg: &str) -> PyErr {
    PyValueError::new_err(format!("{arg}: array must be C-contiguous"))
}

/// The elements of a contiguous 1-D array (a strided view is refused, not copied).
pub fn contiguous1<'a, T: Element>(arg: &'static str, a: &'a PyReadonlyArray1<'_, T>) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: array must be contiguous")))
}

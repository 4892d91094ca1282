//! Tensor <-> Buffer copies: exact round trips for every element type, row-major order for
//! non-contiguous tensors, the routing of the new buffer, and the errors.

mod common;

use candle_core::{DType, Device, Tensor};
use symmem_candle::{copy_to_buffer, from_buffer, to_buffer, Error, TensorElement};

use common::{run, within_limit, Rng};

/// Bit patterns of a tensor's elements, via its raw values.
fn tensor_bits<T: TensorElement>(t: &Tensor) -> Vec<Vec<u8>> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<T>()
        .unwrap()
        .iter()
        .map(|v| {
            // SAFETY: `T` is plain old data of size_of::<T>() bytes.
            unsafe {
                std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>())
            }
            .to_vec()
        })
        .collect()
}

fn round_trip<T: TensorElement>(values: Vec<T>, shape: &[usize]) {
    let t = Tensor::from_vec(values.clone(), shape, &Device::Cpu).unwrap();
    let buf = to_buffer::<T>(&t).unwrap();
    assert_eq!(buf.len(), values.len());
    assert_eq!(buf.to_host_vec().unwrap().len(), values.len());
    let back = from_buffer(&buf, shape, &Device::Cpu).unwrap();
    assert_eq!(back.dims(), shape);
    assert_eq!(back.dtype(), t.dtype());
    assert_eq!(
        tensor_bits::<T>(&back),
        tensor_bits::<T>(&t),
        "{:?}",
        t.dtype()
    );
}

fn floats(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|_| rng.uniform() * 1e3).collect();
    // Values whose bits must survive: signed zero, infinities, a NaN, a subnormal.
    v.extend([
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e-310,
        1.5,
    ]);
    v
}

#[test]
fn every_element_type_round_trips_bit_for_bit() {
    within_limit(|| {
        run(1, |_ctx| {
            let mut rng = Rng::new(7);
            let f = floats(&mut rng, 18); // 24 values: shape [2, 3, 4]
            let shape = [2, 3, 4];
            round_trip::<f64>(f.clone(), &shape);
            round_trip::<f32>(f.iter().map(|&x| x as f32).collect(), &shape);
            round_trip::<half::f16>(f.iter().map(|&x| half::f16::from_f64(x)).collect(), &shape);
            round_trip::<half::bf16>(f.iter().map(|&x| half::bf16::from_f64(x)).collect(), &shape);
            let ints: Vec<i64> = (0..24).map(|i| (i * 7919 - 50_000) * 1_000_003).collect();
            round_trip::<i64>(ints.clone(), &shape);
            round_trip::<i32>(ints.iter().map(|&i| i as i32).collect(), &shape);
            round_trip::<u32>(ints.iter().map(|&i| i as u32).collect(), &shape);
            round_trip::<u8>(ints.iter().map(|&i| i as u8).collect(), &shape);
            // Empty and scalar tensors.
            round_trip::<f32>(vec![], &[0, 3]);
            round_trip::<f32>(vec![2.5], &[]);
        });
    });
}

#[test]
fn a_non_contiguous_tensor_is_copied_in_row_major_order() {
    within_limit(|| {
        run(1, |_ctx| {
            let t = Tensor::arange(0f32, 12.0, &Device::Cpu)
                .unwrap()
                .reshape((3, 4))
                .unwrap();
            let tt = t.t().unwrap(); // [4, 3], strided
            assert!(!tt.is_contiguous());
            let buf = to_buffer::<f32>(&tt).unwrap();
            let expected: Vec<f32> = tt.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(buf.to_host_vec().unwrap(), expected);
            assert_eq!(expected[..4], [0.0, 4.0, 8.0, 1.0]);
            // A narrowed view (contiguous, with an offset into a larger storage).
            let row = t.narrow(0, 1, 1).unwrap();
            let buf = to_buffer::<f32>(&row).unwrap();
            assert_eq!(buf.to_host_vec().unwrap(), vec![4.0, 5.0, 6.0, 7.0]);
            let mut reuse = symmem::alloc_zeroed::<f32>(12).unwrap();
            copy_to_buffer(&tt, &mut reuse).unwrap();
            assert_eq!(reuse.to_host_vec().unwrap(), expected);
        });
    });
}

#[test]
fn the_buffer_follows_the_current_routing() {
    within_limit(|| {
        run(2, |ctx| {
            let tp = ctx.world();
            let t = Tensor::ones((2, 2), DType::BF16, &Device::Cpu).unwrap();
            let plain = to_buffer::<half::bf16>(&t).unwrap();
            assert!(!plain.is_symmetric());
            assert_eq!(plain.pool_label(), "default");
            let sym = {
                let _w = tp.window();
                to_buffer::<half::bf16>(&t).unwrap()
            };
            assert!(sym.is_symmetric());
            assert_eq!(sym.group_name(), Some("world"));
            // The tensor made from a symmetric buffer is an independent copy: changing the
            // buffer afterwards does not change it.
            let back = from_buffer(&sym, (2, 2), &Device::Cpu).unwrap();
            drop(sym);
            let v: Vec<half::bf16> = back.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(v, vec![half::bf16::ONE; 4]);
        });
    });
}

#[test]
fn the_buffer_outlives_the_tensor_and_the_tensor_the_buffer() {
    within_limit(|| {
        run(1, |_ctx| {
            let t = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
            let mut buf = to_buffer::<f32>(&t).unwrap();
            drop(t);
            assert_eq!(buf.to_host_vec().unwrap(), vec![1.0, 2.0, 3.0]);
            let t2 = from_buffer(&buf, 3, &Device::Cpu).unwrap();
            buf.copy_from_host(&[9.0, 9.0, 9.0]).unwrap();
            drop(buf);
            assert_eq!(t2.to_vec1::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
        });
    });
}

#[test]
fn bad_dtypes_and_shapes_are_errors() {
    within_limit(|| {
        run(1, |_ctx| {
            let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
            let e = to_buffer::<half::bf16>(&t).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::DTypeMismatch {
                        tensor: DType::F32,
                        buffer: symmem::DType::BF16,
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains("to_dtype"), "{e}");

            let buf = to_buffer::<f32>(&t).unwrap();
            let e = from_buffer(&buf, (4, 2), &Device::Cpu).unwrap_err();
            match &e {
                Error::ShapeMismatch {
                    shape,
                    shape_elements,
                    buffer_len,
                    ..
                } => {
                    assert_eq!(
                        (shape.as_slice(), *shape_elements, *buffer_len),
                        (&[4, 2][..], 8, 6)
                    );
                }
                other => panic!("{other:?}"),
            }
            assert!(from_buffer(&buf, (6,), &Device::Cpu).is_ok());

            let mut small = symmem::alloc_zeroed::<f32>(5).unwrap();
            let e = copy_to_buffer(&t, &mut small).unwrap_err();
            assert!(matches!(e, Error::ShapeMismatch { .. }), "{e:?}");
            assert_eq!(small.to_host_vec().unwrap(), vec![0.0; 5], "left unchanged");
        });
    });
}

#[test]
fn no_rank_context_is_an_error() {
    within_limit(|| {
        // The test thread is no rank: to_buffer has nowhere to allocate.
        let t = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
        let e = to_buffer::<f32>(&t).unwrap_err();
        assert!(
            matches!(e, Error::Symmem(symmem::Error::NoRankContext)),
            "{e:?}"
        );
        // And the error crosses into candle's error type with its message.
        let c: candle_core::Error = e.into();
        assert!(c.to_string().contains("no rank context"), "{c}");
    });
}

#[test]
fn a_cuda_device_is_refused_when_one_can_be_made() {
    // Without candle's `cuda` feature no CUDA device can be constructed; the refusal itself is
    // unit-tested in `src/convert.rs` (`devices_other_than_the_cpu_are_refused_by_name`).
    match Device::new_cuda(0) {
        Err(_) => eprintln!("skipped: no CUDA device can be constructed in this build"),
        Ok(dev) => {
            within_limit(move || {
                run(1, move |_ctx| {
                    let t = Tensor::zeros(4, DType::F32, &dev).unwrap();
                    let e = to_buffer::<f32>(&t).unwrap_err();
                    assert!(matches!(e, Error::CudaNotImplemented { .. }), "{e:?}");
                    let b = symmem::alloc_zeroed::<f32>(4).unwrap();
                    let e = from_buffer(&b, 4, &dev).unwrap_err();
                    assert!(matches!(e, Error::CudaNotImplemented { .. }), "{e:?}");
                });
            });
        }
    }
}

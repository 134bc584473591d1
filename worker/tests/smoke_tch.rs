//! Smoke test of tch (libtorch from the venv's torch 2.13.0), built with the `torch` feature as CI and
//! the provider build are.
#![cfg(feature = "torch")]

#[test]
fn tch_tensor_op_runs_on_the_venv_libtorch() {
    let t = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
    let p = t.matmul(&t);
    let v: Vec<f32> = Vec::try_from(p.flatten(0, 1)).unwrap();
    assert_eq!(v, vec![7.0, 10.0, 15.0, 22.0]);
}

//! With the `wgpu` feature the backend suites also run on burn's wgpu backend: a machine
//! without a usable adapter (in CI, Mesa's lavapipe) must fail here, loudly, rather than let
//! the suites be skipped.

#[test]
fn a_wgpu_adapter_is_present_and_computes() {
    use burn::tensor::Tensor;
    let adapter = dp_core::device::init_wgpu().expect("the wgpu suites need an adapter");
    eprintln!("wgpu adapter: {adapter}");
    let device = Default::default();
    let x = Tensor::<dp_core::device::Wgpu, 1>::from_floats([1.0, 2.0, 3.0], &device);
    let y: Vec<f32> = (x.clone() * x).into_data().to_vec().unwrap();
    assert_eq!(y, vec![1.0, 4.0, 9.0]);
}

fn main() {
    println!("dify-gitops {}", env!("CARGO_PKG_VERSION"));
}

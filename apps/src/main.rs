fn main() {
    println!("malt: not yet");
}

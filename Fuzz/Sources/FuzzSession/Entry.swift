import FuzzDriver

@main
enum Entry {
    static func main() { runFuzzer(fuzzSession) }
}

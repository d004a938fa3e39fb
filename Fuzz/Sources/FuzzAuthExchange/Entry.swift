import FuzzDriver

@main
enum Entry {
    static func main() { runFuzzer(fuzzAuthExchange) }
}

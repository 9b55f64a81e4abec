import XCTest
@testable import I2QCore

/// The progress line fits the terminal (issue 20): never wider than columns − 1 (a wrapped line
/// cannot be redrawn in place), the bar shrinks first, then the text is cut.
final class ProgressLineTests: XCTestCase {
    let tail = "] 3/16 windows  1.05/s  ETA 11s  ppl 30.047"

    func testWideTerminalGetsTheFullBar() {
        let l = ProgressBar.render(label: "perplexity", fraction: 0.5, tail: tail, columns: 120)
        XCTAssertEqual(l, "perplexity [" + String(repeating: "#", count: 15) + String(repeating: ".", count: 15) + tail)
    }

    func testNarrowTerminalsNeverWrap() {
        for cols in [20, 40, 56, 60, 80] {
            let l = ProgressBar.render(label: "perplexity", fraction: 0.25, tail: tail, columns: cols)
            XCTAssertLessThanOrEqual(l.count, cols - 1, "\(cols): \(l)")
            XCTAssertTrue(l.hasPrefix("perplexity ["), l)
        }
        // 60 columns: 59 − "perplexity [" (12) − the tail (43) leaves a 4-column bar.
        XCTAssertEqual(ProgressBar.render(label: "perplexity", fraction: 0.5, tail: tail, columns: 60),
                       "perplexity [##.." + tail)
    }
}

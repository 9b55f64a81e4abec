import XCTest
@testable import I2QImage

final class SmokeTests: XCTestCase {
    func testBuilds() { XCTAssertEqual(PILResize.precisionBits, 22) }
}

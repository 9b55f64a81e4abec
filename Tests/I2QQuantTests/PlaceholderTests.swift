import XCTest
@testable import I2QQuant
final class QuantPlaceholderTests: XCTestCase {
    func testModuleBuilds() { XCTAssertNotNil(I2QQuantModule.self) }
}

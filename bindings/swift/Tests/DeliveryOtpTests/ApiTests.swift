import DeliveryOtp
import Foundation
import XCTest

/// What an iOS app does with the library, beyond the vectors.
final class ApiTests: XCTestCase {
    private let rfcSecret = Data("12345678901234567890".utf8)

    func testEnrolmentRoundTrip() throws {
        let secret = try Secret.generate()
        XCTAssertEqual(secret.byteLength, 20)
        let key = try KeyUri(kind: .totp(period: 30), secret: secret, account: "courier-17@acme.example",
                             issuer: "Acme Deliveries")
        let uri = try key.toUri()
        XCTAssertTrue(uri.hasPrefix("otpauth://totp/Acme%20Deliveries:courier-17%40acme.example?secret="))
        let totp = try KeyUri(parsing: uri).totp()
        let now: Date = 1_764_000_000
        let code = try totp.generate(time: now)
        let match = try XCTUnwrap(try totp.verify(code: code, time: now + 30))
        XCTAssertEqual(match.drift, -1)
        XCTAssertNil(try totp.verify(code: code, time: now + 30, lastUsedStep: match.step), "replayed code accepted")
    }

    func testDefaultsAreSha1SixDigitsThirtySeconds() throws {
        let secret = try Secret.fromBytes(bytes: rfcSecret)
        XCTAssertEqual(try Totp(secret: secret).generate(time: 59), "287082")
        XCTAssertEqual(try Hotp(secret: secret).generate(counter: 0), "755224")
    }

    func testBadSettingsThrowTypedErrorsWithReadableMessages() throws {
        let secret = try Secret.fromBytes(bytes: rfcSecret)
        XCTAssertThrowsError(try Hotp(secret: secret, digits: 5)) { error in
            guard case OtpError.InvalidDigits(let digits, let min, let max) = error else { return XCTFail("\(error)") }
            XCTAssertEqual([digits, min, max], [5, 6, 10])
            let sentence = "a one-time password has 6 to 10 digits; 5 were asked for"
            XCTAssertEqual(error.localizedDescription, sentence)
            XCTAssertEqual("\(error)", sentence)
        }
        XCTAssertThrowsError(try Secret(base32: "JBSW1Y3D")) { error in
            guard case OtpError.InvalidBase32Character(let position) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(position, 5)
        }
        XCTAssertEqual(expectOtpError("period 0") { try Totp.withPeriod(secret: secret, digits: 6, period: 0, algorithm: nil, t0: 0) }.0, "invalid_period")
        let totp = try Totp.withPeriod(secret: secret, digits: 6, period: 30, algorithm: nil, t0: 100)
        XCTAssertEqual(expectOtpError("before T0") { try totp.generate(time: 99) }.0, "time_before_start")
        XCTAssertEqual(expectOtpError("window") { try totp.verify(code: "123456", time: 200, behind: 101) }.0,
                       "window_too_large")
        let (k, message) = expectOtpError("malformed") { try totp.verify(code: "12345x", time: 200) }
        XCTAssertEqual(k, "malformed_code")
        XCTAssertFalse(message.contains("12345"), "message repeats the entered code")
        XCTAssertEqual(expectOtpError("empty") { try Secret.fromBytes(bytes: Data()) }.0, "empty_secret")
        XCTAssertEqual(expectOtpError("short") { try Secret.generateWithLength(bytes: 15) }.0, "secret_too_short")
    }

    func testSecretsAreRedactedAndCompared() throws {
        let a = try Secret.fromBytes(bytes: rfcSecret)
        let b = try Secret.fromBase32(text: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
        XCTAssertEqual(a, b)
        XCTAssertEqual(String(reflecting: a), "Secret([redacted])")
        let shown = String(reflecting: try Hotp(secret: a))
        XCTAssertFalse(shown.contains("GEZDG") || shown.contains("1234567890"), shown)
        XCTAssertNotEqual(a, try Secret.generate())
    }

    func testTimesPastTwoToThe32() throws {
        let secret = try Secret.fromBytes(bytes: rfcSecret)
        XCTAssertEqual(try Totp(secret: secret, digits: 8).generate(time: 20_000_000_000), "65353130")
        let perSecond = try Totp.withPeriod(secret: secret, digits: 6, period: 1, algorithm: nil, t0: 0)
        let far: Date = 253_402_300_799  // 9999-12-31T23:59:59Z
        let code = try perSecond.generate(time: far)
        let match = try perSecond.verify(code: code, time: far, behind: 100, ahead: 100)
        XCTAssertEqual(match?.step, 253_402_300_799)
        // An HOTP counter is RFC 4226's 8 unsigned bytes, carried in an Int64's bits.
        let hotp = try Hotp(secret: secret)
        let last = Int64(bitPattern: UInt64.max)
        XCTAssertEqual(try hotp.verify(code: hotp.generate(counter: last), counter: last - 1, lookAhead: 1), last)
    }

    func testNowConveniencesUseTheDeviceClock() throws {
        let totp = try Totp(secret: try Secret.generate())
        let code = try totp.generateNow()
        XCTAssertEqual(code.count, 6)
        // The step may tick over between the calls; one step behind is allowed by default.
        XCTAssertNotNil(try totp.verifyNow(code: code))
    }
}

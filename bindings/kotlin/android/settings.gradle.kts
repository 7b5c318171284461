// Standalone Gradle build of the Starling Android library (AAR).
// Inputs are prepared by `cargo run -p xtask -- android` (jniLibs per ABI and
// the generated Kotlin); see bindings/README.md. To use it from an app
// project instead, `includeBuild("path/to/bindings/kotlin/android")` or copy
// this module in.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "starling-android"

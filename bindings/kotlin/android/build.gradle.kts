// Android library module: the uniffi-generated Kotlin (Android config), the
// shared hand-written helpers (../src/main/kotlin) and libstarling_ffi.so for
// each ABI (src/main/jniLibs/<abi>/), packaged as an AAR.
//
// Prepare the inputs first:   cargo run -p xtask -- android
// Then build:                 gradle -p bindings/kotlin/android assembleRelease
// Output:                     build/outputs/aar/starling-android-release.aar
plugins {
    id("com.android.library") version "8.7.3"
    // Same Kotlin version as the JVM build (bindings/kotlin/pom.xml).
    id("org.jetbrains.kotlin.android") version "2.4.21"
}

android {
    namespace = "org.starling.ffi"
    compileSdk = 35

    defaultConfig {
        // Keep in sync with ANDROID_API in xtask/src/main.rs.
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
        ndk {
            abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64")
        }
    }

    sourceSets {
        getByName("main") {
            java.srcDirs("src/main/kotlin-generated", "../src/main/kotlin")
            jniLibs.srcDirs("src/main/jniLibs")
        }
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

}

kotlin {
    compilerOptions {
        jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17)
    }
}

dependencies {
    // JNA's AAR carries libjnidispatch.so for every Android ABI.
    implementation("net.java.dev.jna:jna:5.19.1@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.11.0")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.11.0")
}

// Fail early with a clear message when the native inputs are missing.
tasks.named("preBuild") {
    doFirst {
        val generated = file("src/main/kotlin-generated")
        val jni = file("src/main/jniLibs/arm64-v8a/libstarling_ffi.so")
        if (!generated.exists() || !jni.exists()) {
            throw GradleException("Run `cargo run -p xtask -- android` at the workspace root first.")
        }
    }
}
